"""Ingestion in stages (pipeline.py): list → read → hash → skip stored → decode → embed → store; bad files are reported."""

from __future__ import annotations

from lookalike.ingest.decode import DecodedImage, decode_image, encode_jpeg, image_media_type, shrink, to_rgb
from lookalike.ingest.fetch import Fetched, fetch_public_url
from lookalike.ingest.ids import content_hash, stable_id
from lookalike.ingest.pipeline import IngestPlan
from lookalike.ingest.policy import FetchPolicy, fetch
from lookalike.ingest.report import IngestReport
from lookalike.ingest.sources import Listing, Record, Skipped, open_listing, parse_created_at

__all__ = [
    "DecodedImage",
    "FetchPolicy",
    "Fetched",
    "IngestReport",
    "IngestPlan",
    "Listing",
    "Record",
    "Skipped",
    "content_hash",
    "decode_image",
    "encode_jpeg",
    "fetch_public_url",
    "image_media_type",
    "fetch",
    "open_listing",
    "parse_created_at",
    "shrink",
    "stable_id",
    "to_rgb",
]
