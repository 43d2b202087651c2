"""The default model, in a module of its own: ``--help`` shows it without importing the settings
(pydantic-settings costs a tenth of a second at every start)."""

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
