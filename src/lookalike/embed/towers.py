"""open_clip's two towers as plain modules: what the runtimes run and what ONNX export traces.

The text tower runs only as many token positions as the longest text in the batch needs.
CLIP's text transformer is causal and pools the end-of-text position, so the padding after
it cannot change the result; a shop query of four words costs a tenth of the 77 positions.
"""

from __future__ import annotations

from typing import Any

import torch
from open_clip.transformer import text_global_pool
from torch import nn


class ImageTower(nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)


class TextTower(nn.Module):
    """open_clip's ``CLIP.encode_text`` for any sequence length up to the context length."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.token_embedding = model.token_embedding
        self.positional_embedding = model.positional_embedding
        self.transformer = model.transformer
        self.ln_final = model.ln_final
        self.text_projection = model.text_projection
        self.attn_mask: torch.Tensor
        self.register_buffer("attn_mask", model.attn_mask, persistent=False)
        self.pool_type = model.text_pool_type
        self.eos_token_id = getattr(model, "text_eos_id", None)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        x = self.ln_final(x)
        x = text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_token_id)
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x @ self.text_projection


def text_tower(model: Any) -> nn.Module | None:
    """A trimmable text tower, or None when trimming would change the result.

    That is the case for towers from Hugging Face (CustomTextCLIP) and for poolings that
    read a position after the end of the text.
    """
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask")
    if not all(getattr(model, name, None) is not None for name in needed):
        return None
    if getattr(model, "text_pool_type", None) not in ("argmax", "eos"):
        return None
    return TextTower(model)
