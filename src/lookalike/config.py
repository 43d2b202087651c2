"""One settings object, read once: environment (LOOKALIKE_*) overridden by command-line values."""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookalike.backend import Backend
from lookalike.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED

__all__ = ["DEFAULT_MODEL", "DEFAULT_PRETRAINED", "Settings", "load_settings"]


class Settings(BaseSettings):
    """Everything a process needs to build its pieces.

    Every field can be set from the environment with the ``LOOKALIKE_`` prefix
    (``LOOKALIKE_DB``, ``LOOKALIKE_MODEL``, ...); values passed to the constructor win.
    """

    model_config = SettingsConfigDict(env_prefix="LOOKALIKE_", extra="ignore")

    db: str = "./lookalike.db"
    collection: str = "images"
    model: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED
    device: str = "auto"
    # auto: on a CPU, the fastest ONNX Runtime export that agrees with PyTorch; else PyTorch.
    runtime: str = "auto"
    # When `auto` meets a model not yet exported and probed on this machine: "background" runs on
    # PyTorch fp32 while a background process exports and probes (the first command answers at
    # once); "now" exports and probes before the command goes on (minutes for ViT-B-32 on 2 cores).
    probe: Literal["background", "now"] = "background"
    cache_dir: str = Field(
        default_factory=lambda: os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "lookalike"
        )
    )
    # Detecting objects before embedding (index/search --detect): a torchvision detector, its
    # weights ("default" downloads COCO weights; a local .pth; "random"), and which boxes count.
    detector: str = "fasterrcnn_mobilenet_v3_large_fpn"
    detector_weights: str = "default"
    detect_min_score: float = Field(default=0.25, ge=0.0, le=1.0)
    detect_min_size: int = Field(default=32, ge=1)  # pixels, the shorter side of a box
    detect_max_boxes: int = Field(default=10, ge=1, le=100)
    batch_size: int = Field(default=32, ge=1, le=4096)
    workers: int = Field(default_factory=lambda: max(1, min(8, os.cpu_count() or 1)), ge=1, le=64)
    # Milvus server credentials and TLS; ignored by Milvus Lite. An https:// URI turns TLS on.
    token: str = ""
    user: str = ""
    password: str = ""
    tls_server_pem: str = ""  # one-way TLS: the server's certificate
    tls_server_name: str = ""  # the name in the server's certificate, when it differs from the host
    tls_ca_pem: str = ""  # two-way TLS: the CA, the client's certificate and key
    tls_client_pem: str = ""
    tls_client_key: str = ""
    # Each Milvus call retries a lost connection with backoff (pymilvus) for up to this long.
    timeout_s: float = Field(default=30.0, gt=0)
    # Milvus Lite starts a server of its own on first use; on a loaded 2-core machine its channel
    # can take longer than 30 s to answer, so a Lite database gets a generous readiness limit.
    lite_timeout_s: float = Field(default=180.0, gt=0)
    # The recall@10 a vector search of a Milvus Lite collection promises: each HNSW graph of its
    # read index is walked as broadly as measured, on the data it holds, to meet it (1.0: every row
    # scored); `lookalike stats` shows it and the last measurement. FLAT is exact anyway.
    search_recall: float = Field(default=0.99, gt=0.0, le=1.0)

    def store_timeout_s(self, uri: str) -> float:
        """The limit for a database: a server's timeout, or Milvus Lite's readiness limit."""
        if Backend.of(uri) is Backend.SERVER:
            return self.timeout_s
        return max(self.timeout_s, self.lite_timeout_s)

    def tls(self) -> dict[str, str]:
        """pymilvus' TLS arguments for the options that are set."""
        names = {
            "server_pem_path": self.tls_server_pem,
            "server_name": self.tls_server_name,
            "ca_pem_path": self.tls_ca_pem,
            "client_pem_path": self.tls_client_pem,
            "client_key_path": self.tls_client_key,
        }
        options = {key: value for key, value in names.items() if value}
        if options:
            options["secure"] = "true"
        return options

    # Decoding limits: a decompression bomb is refused, not decoded.
    max_image_pixels: int = Field(default=100_000_000, ge=1)
    max_download_mb: float = Field(default=50.0, gt=0)
    fetch_timeout_s: float = Field(default=20.0, gt=0)
    # HTTP API (lookalike serve).
    api_key: str = ""
    max_upload_mb: float = Field(default=20.0, gt=0)
    # Fetch URLs of loopback and private addresses too (CLI and API alike); link-local and cloud
    # metadata addresses (169.254.0.0/16, fe80::/10, 169.254.169.254, fd00:ec2::254, ...) stay
    # refused unless a network in allow_networks holds them.
    allow_private_urls: bool = False
    # Networks whose addresses URLs may name whatever they are (private, link-local, metadata),
    # separated by commas or spaces: "10.20.0.0/16, 169.254.169.254/32".
    allow_networks: str = ""
    upload_dir: str = ""  # where uploaded images are kept; default: beside the Milvus Lite file
    # Folders whose files POST /index may read, separated by os.pathsep (":"); none by default, so
    # the API indexes uploads and URLs only.
    index_roots: str = ""
    # Background jobs of the API: a time limit each, and how many finished ones are kept, how long.
    job_time_limit_s: float = Field(default=3600.0, gt=0)
    jobs_keep: int = Field(default=100, ge=1)
    jobs_keep_s: float = Field(default=86400.0, gt=0)
    # Connections to `lookalike serve`, as a reverse proxy would time them: a request's headers
    # must be complete this long after the connection (or the next request's first byte), a body
    # may pause this long between two reads, and a kept-alive connection may idle this long.
    header_timeout_s: float = Field(default=60.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    keep_alive_timeout_s: float = Field(default=5.0, gt=0)
    # Downloads the API runs at once for image_url searches (apart from the searches themselves).
    fetch_concurrency: int = Field(default=8, ge=1, le=256)
    # The API encodes concurrent queries together: up to this many inputs a batch (1: one at a time),
    # waiting at most this long after the first for others to join it, and only while other callers
    # are on their way (a lone query never waits).
    serve_batch: int = Field(default=16, ge=1, le=1024)
    serve_batch_wait_ms: float = Field(default=3.0, ge=0, le=1000)
    # Threads of the text tower on a CPU (ONNX Runtime, OpenVINO); 0: two for a single query (the
    # CLI), one in `lookalike serve`, whose concurrent requests keep the cores busy.
    text_threads: int = Field(default=0, ge=0, le=256)

    # Hash banks: one entry matching more than this many uploads within the window (seconds) is a
    # flood; its refusals are paused (its matches flagged for review instead) and one alert kept.
    bank_flood_matches: int = Field(default=100, ge=1)
    bank_flood_window_s: float = Field(default=3600.0, gt=0)

    # The collection's workflow database (policies, flags, reviews, PDQ hashes); empty: beside
    # a Lite database file, or DATA_DIR/workflow/SERVER-COLLECTION.sqlite for a server.
    workflow_db: str = ""
    data_dir: str = Field(
        default_factory=lambda: os.path.join(
            os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share"),
            "lookalike",
        )
    )

    # The review queue: a reviewer's claim on a flag lasts this long unless renewed (the review page
    # renews it while the flag is on screen); pictures are blurred until revealed unless turned off.
    review_lease_s: float = Field(default=300.0, ge=1, le=86400)
    review_blur: bool = True
    # Webhooks: every flag raised and every decision is POSTed, signed with the secret, to each URL
    # (separated by commas or spaces), retried with backoff; see lookalike.webhooks.
    webhook_urls: str = ""
    webhook_secret: str = ""
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=300)
    webhook_attempts: int = Field(default=10, ge=1, le=100)  # then the delivery is listed as failed
    webhook_backoff_s: float = Field(default=5.0, gt=0, le=3600)  # doubled after each failure, to an hour
    webhook_keep_days: float = Field(default=7.0, gt=0)  # delivered events kept this long
    # Waves: `lookalike serve` looks every waves_every_s (0: never) for near-duplicate clusters that
    # appeared across waves_min_sellers sources within the last waves_window_s.
    waves_every_s: float = Field(default=0.0, ge=0)
    waves_window_s: float = Field(default=86400.0, gt=0)
    waves_min_sellers: int = Field(default=3, ge=2, le=10_000)
    waves_threshold: float = Field(default=0.95, ge=-1.0, le=1.0)

    def webhook_targets(self) -> tuple[str, ...]:
        """The webhook URLs, checked (http or https, a host, a secret to sign with); ConfigError if not."""
        from lookalike.errors import ConfigError
        from lookalike.webhooks.signing import check_targets

        urls = tuple(part for part in re.split(r"[\s,]+", self.webhook_urls) if part)
        try:
            return check_targets(urls, self.webhook_secret)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @field_validator("allow_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        _networks(value)  # a typo is refused when the settings are read, not at the first download
        return value

    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The networks of ``allow_networks``."""
        return _networks(self.allow_networks)

    def index_roots_list(self) -> list[str]:
        """The folders POST /index may read."""
        return [os.path.expanduser(root) for root in self.index_roots.split(os.pathsep) if root.strip()]

    @property
    def backend(self) -> Backend:
        return Backend.of(self.db)

    def workflow_path(self) -> str:
        """The SQLite file of the collection's policies, flags, reviews and perceptual hashes."""
        if self.workflow_db:
            return self.workflow_db
        if self.backend is Backend.SERVER:  # per user, one file per server and collection
            server = re.sub(r"[^A-Za-z0-9.-]+", "_", self.db.split("://", 1)[1]).strip("_")
            return os.path.join(self.data_dir, "workflow", f"{server}-{self.collection}.sqlite")
        return f"{self.db}.{self.collection}.workflow.sqlite"

    def uploads_path(self) -> str:
        """The folder for images uploaded through the API."""
        if self.upload_dir:
            return self.upload_dir
        return f"{self.db}.uploads" if self.backend is Backend.LITE else "./lookalike-uploads"


def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part) for part in re.split(r"[\s,]+", text) if part)
    except ValueError as exc:
        raise ValueError(f"allow_networks: {exc}") from exc


def load_settings(**overrides: Any) -> Settings:
    """Read the environment once and apply the caller's non-empty overrides."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})
