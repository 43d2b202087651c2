"""Whole-process start-up of lookalike's commands, side by side with rclip or a plain ONNX Runtime encode.

Every figure is a whole process, as a user's shell runs it: wall time and peak resident memory (the
kernel's own accounting, wait4), the median of ``--runs`` runs after a warm-up, the commands taken in
turn round after round so that a machine whose speed drifts slows them all alike. Printed with the CPU
model and the load average before and after, since these machines are shared.

Set up once in ``--work`` (reused by later runs): ``--images`` generated 800 x 800 JPEGs indexed with
ViT-B-32 and seeded random weights (no network), its export and runtime probe done before any timing;
a ``--vectors`` collection of clustered vectors recorded as embedded with the same model (for the
text query at 100K); and, where ``--rclip`` names an rclip 3.x executable, rclip's data folder with the
same random text tower exported for it (and a random ViT-B-32-256 image tower, rclip's input size),
the same folder indexed by it. Without rclip, the reference is a plain ONNX Runtime encode of the
exported text tower by a short script (onnxruntime, numpy and CLIP's tokenizer, nothing else).

python scripts/bench_startup.py --work /tmp/startup [--images 1000] [--vectors 100000] [--runs 5]
                                [--rclip /path/to/venv/bin/rclip] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = "red dress"
# The targets: whole-process wall seconds (and MB of peak memory for the text query at 1K).
TARGETS = {
    "search --text (1K)": (1.0, 600.0),
    "search --text (100K)": (1.5, None),
    "search --image (1K)": (1.5, None),
    "stats (1K)": (0.6, None),
    "show (1K)": (0.6, None),
    "flags (1K)": (0.6, None),
    "--help": (0.3, None),
}


@dataclass
class Command:
    label: str
    argv: list[str]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    walls: list[float] = field(default_factory=list)
    peaks_mb: list[float] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)


def process_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a timed process: this one's, less PYTHONDONTWRITEBYTECODE (a sandbox may set
    it; an installed package has its bytecode, so recompiling every module each run is not what a
    user's shell pays), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


def run_once(command: Command) -> tuple[float, float, int]:
    """Wall seconds, peak resident MB and exit code of one whole process (its output thrown away)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command.argv,
        cwd=command.cwd,
        env=process_env(command.env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, process.returncode


def measure(commands: list[Command], runs: int, warmups: int = 1) -> None:
    for round_ in range(warmups + runs):
        for command in commands:
            wall, peak, code = run_once(command)
            if round_ >= warmups:
                command.walls.append(wall)
                command.peaks_mb.append(peak)
                command.codes.append(code)
        print(f"  round {round_ + 1}/{warmups + runs} done", file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    flags = set(fields.get("Flags", "").split())
    extensions = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return (
        f"{fields.get('Model name', '?')} (family {fields.get('CPU family', '?')} model {fields.get('Model', '?')}), "
        f"{os.cpu_count()} CPUs, {' '.join(extensions)}"
    )


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# -- set-up ------------------------------------------------------------------------------------------


def lookalike_env(work: Path) -> dict[str, str]:
    return {
        "PYTHONPATH": str(ROOT / "src"),
        "LOOKALIKE_CACHE_DIR": str(work / "cache"),
        "LOOKALIKE_DATA_DIR": str(work / "data"),
        "LOOKALIKE_PROBE": "now",  # the export and the probe happen in the set-up, not in a timed run
        "HF_HUB_OFFLINE": "1",
    }


def lookalike(*args: str) -> list[str]:
    return [sys.executable, "-m", "lookalike", *args]


def setup_collection(work: Path, images: int, model: str, pretrained: str) -> Path:
    sys.path.insert(0, str(ROOT / "src"))
    from lookalike.bench import generate_photos

    photos = work / "photos"
    if not photos.is_dir() or len(list(photos.glob("*.jpg"))) < images:
        print(f"writing {images} photos of 800 x 800 …", file=sys.stderr, flush=True)
        generate_photos(photos, images, 800)
    db = work / "1k.db"
    if not db.exists():
        print("indexing them (the first use exports and probes the model) …", file=sys.stderr, flush=True)
        subprocess.run(
            lookalike("index", str(photos), "--db", str(db), "--model", model, "--pretrained", pretrained),
            env={**os.environ, **lookalike_env(work)},
            check=True,
        )
    return photos


FILL = """
import sys
import numpy as np
from lookalike.bench import clustered_vectors
from lookalike.config import load_settings
from lookalike.embed import create_embedder
from lookalike.store.models import Item
from lookalike.usecases import Context
from lookalike.usecases.embedding import of_settings

db, model, pretrained, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
settings = load_settings(db=db, model=model, pretrained=pretrained)
ctx = Context(settings)
name = create_embedder(settings).name  # nothing loads: the name is the model's and the weights'
ctx.store.create(512, model=of_settings(settings, name).to_property())
vectors = clustered_vectors(n, 512)
start = 1_672_531_200  # twelve months of 2023
created = np.linspace(start, start + 365 * 86400 - 1, n).astype(np.int64)
for first in range(0, n, 5000):
    ctx.store.insert([
        Item(i + 1, f"{i:064x}", f"v{i}", "", "bench", int(created[i]), f"/bench/v{i}.jpg", 800, 800, vectors[i])
        for i in range(first, min(first + 5000, n))
    ])
ctx.store.flush()
ctx.close()
"""


def setup_large(work: Path, vectors: int, model: str, pretrained: str) -> Path:
    db = work / f"{vectors // 1000}k.db"
    if not db.exists():
        print(f"filling a collection of {vectors} clustered vectors …", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, "-c", FILL, str(db), model, pretrained, str(vectors)],
            env={**os.environ, **lookalike_env(work)},
            check=True,
        )
    return db


def text_tower_export(work: Path) -> Path:
    """The fp32 ONNX export of the text tower lookalike made in the set-up."""
    (found,) = (work / "cache" / "onnx").glob("*/text.onnx")
    return found


ORT_ENCODE = """
import importlib.util, sys
import numpy as np
import onnxruntime as ort
spec = importlib.util.spec_from_file_location("tokenizer", sys.argv[1])
tokenizer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tokenizer)
tokens = tokenizer.ClipTokenizer(tokenizer.vocab_path())([sys.argv[3]])
end = int(tokens[0].argmax()) + 1
session = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
vector = session.run(None, {"tokens": tokens[:, :end]})[0]
print(float(np.linalg.norm(vector)))
"""


RCLIP_EXPORT = """
import gzip, shutil, sys
from pathlib import Path
import open_clip, torch
from lookalike.embed.loading import load_open_clip
data, model_name, pretrained = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
folder = data / "ViT-B-32-256-datacomp_s34b_b86k"
folder.mkdir(parents=True, exist_ok=True)
text_model = load_open_clip(model_name, pretrained, "cpu").model  # the very text tower lookalike runs

class Text(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
    def forward(self, tokens):
        return self.model.encode_text(tokens)

class Image(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model
    def forward(self, pixels):
        return self.model.encode_image(pixels)

torch.manual_seed(0)
image_model = open_clip.create_model("ViT-B-32-256", pretrained=None).eval()  # rclip's 256 px input
with torch.enable_grad():  # without gradients the attention takes a fused path ONNX cannot express
    torch.onnx.export(Text(text_model), (torch.zeros(1, 77, dtype=torch.int64),), str(folder / "textual.onnx"),
        input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "b"}, "output": {0: "b"}},
        opset_version=17, dynamo=False)
    torch.onnx.export(Image(image_model), (torch.zeros(1, 3, 256, 256),), str(folder / "visual.onnx"),
        input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "b"}, "output": {0: "b"}},
        opset_version=17, dynamo=False)
(data / "tokenizer").mkdir(exist_ok=True)
vocab = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
shutil.copy(vocab, data / "tokenizer" / vocab.name)
"""


def setup_rclip(work: Path, rclip: str, photos: Path, model: str, pretrained: str) -> dict[str, str]:
    data = work / "rclip-data"
    env = {"RCLIP_DATADIR": str(data), "HF_HUB_OFFLINE": "1"}
    if not (data / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz").is_file():  # written last
        print("exporting the random ViT-B-32 towers for rclip …", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, "-c", RCLIP_EXPORT, str(data), model, pretrained],
            env={**os.environ, **lookalike_env(work)},
            check=True,
        )
    if not (data / "indexed").exists():
        print("indexing the same photos with rclip …", file=sys.stderr, flush=True)
        subprocess.run(
            [rclip, TEXT], cwd=photos, env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL
        )
        (data / "indexed").touch()
    return env


# -- the table ----------------------------------------------------------------------------------------


def summary(command: Command) -> dict[str, float]:
    return {
        "wall_median_s": statistics.median(command.walls),
        "wall_min_s": min(command.walls),
        "wall_max_s": max(command.walls),
        "peak_median_mb": statistics.median(command.peaks_mb),
    }


def print_table(commands: list[Command], pairs: dict[str, list[str]]) -> None:
    by_label = {c.label: c for c in commands}
    header = ["command", "wall median s", "min–max s", "peak MB", "target", "meets", "against (wall, memory)"]
    rows = []
    for command in commands:
        figures = summary(command)
        target = TARGETS.get(command.label)
        meets = ""
        if target is not None:
            wall_ok = figures["wall_median_s"] <= target[0]
            mem_ok = target[1] is None or figures["peak_median_mb"] <= target[1]
            meets = "yes" if wall_ok and mem_ok else "NO"
        ratios = []
        for reference in pairs.get(command.label, []):
            ref = summary(by_label[reference])
            ratios.append(
                f"{reference}: ×{figures['wall_median_s'] / ref['wall_median_s']:.2f}, "
                f"×{figures['peak_median_mb'] / ref['peak_median_mb']:.2f}"
            )
        failed = [code for code in command.codes if code != 0]
        rows.append(
            [
                command.label + (f" (exit {failed[0]})" if failed else ""),
                f"{figures['wall_median_s']:.3f}",
                f"{figures['wall_min_s']:.3f}–{figures['wall_max_s']:.3f}",
                f"{figures['peak_median_mb']:.0f}",
                (f"≤ {target[0]} s" + (f", ≤ {target[1]:.0f} MB" if target[1] else "")) if target else "",
                meets,
                "; ".join(ratios),
            ]
        )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", type=Path, required=True, help="set-up folder, reused by later runs")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--vectors", type=int, default=100_000, help="0: no large collection")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="random")
    parser.add_argument("--rclip", default="", help="an rclip 3.x executable (its own virtual environment)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    photos = setup_collection(work, args.images, args.model, args.pretrained)
    db1k = str(work / "1k.db")
    env = lookalike_env(work)
    query_photo = str(sorted(photos.glob("*.jpg"))[3])
    commands = [
        Command("search --text (1K)", lookalike("search", "--text", TEXT, "--db", db1k), env=env),
        Command("search --image (1K)", lookalike("search", "--image", query_photo, "--db", db1k), env=env),
        Command("stats (1K)", lookalike("stats", "--db", db1k), env=env),
        Command("show (1K)", lookalike("show", "--item-id", "00003", "--db", db1k), env=env),
        Command("flags (1K)", lookalike("flags", "--db", db1k), env=env),
        Command("--help", lookalike("--help"), env=env),
    ]
    if args.vectors:
        db_large = str(setup_large(work, args.vectors, args.model, args.pretrained))
        label = f"search --text ({args.vectors // 1000}K)"
        commands.insert(1, Command(label, lookalike("search", "--text", TEXT, "--db", db_large), env=env))
    pairs: dict[str, list[str]] = {}
    commands.append(
        Command(
            "plain ONNX Runtime text encode",
            [
                sys.executable,
                "-c",
                ORT_ENCODE,
                str(ROOT / "src/lookalike/embed/tokenizer.py"),
                str(text_tower_export(work)),
                TEXT,
            ],
        )
    )
    pairs["search --text (1K)"] = ["plain ONNX Runtime text encode"]
    if args.rclip:
        rclip_env = setup_rclip(work, args.rclip, photos, args.model, args.pretrained)
        commands += [
            Command("rclip text query (1K)", [args.rclip, "--no-indexing", TEXT], photos, rclip_env),
            Command("rclip image query (1K)", [args.rclip, "--no-indexing", query_photo], photos, rclip_env),
            Command("rclip --help", [args.rclip, "--help"], photos, rclip_env),
        ]
        pairs["search --text (1K)"].insert(0, "rclip text query (1K)")
        pairs["search --image (1K)"] = ["rclip image query (1K)"]
        pairs["--help"] = ["rclip --help"]
    before = load_average()
    print(
        f"timing {len(commands)} commands, {args.runs} runs each after a warm-up …",
        file=sys.stderr,
        flush=True,
    )
    measure(commands, args.runs)
    after = load_average()
    print(f"CPU: {cpu_model()}")
    print(f"load average (1, 5, 15 min): {before} before, {after} after; Python {platform.python_version()}")
    print(
        f"model {args.model} ({args.pretrained} weights); {args.images} photos of 800 x 800; "
        f"median of {args.runs} whole-process runs after a warm-up, commands in turn"
    )
    print()
    print_table(commands, pairs)
    if args.json:
        result = {
            "cpu": cpu_model(),
            "load_average": {"before": before, "after": after},
            "commands": {c.label: {**summary(c), "argv": c.argv, "codes": c.codes} for c in commands},
        }
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
