"""Domain exceptions. The core raises them; only cli.py and api/ turn them into exit codes or HTTP status."""

from __future__ import annotations


class LookalikeError(Exception):
    """Base class: a problem the user can act on, with a message that says how."""

    exit_code = 1


class ConfigError(LookalikeError):
    """A flag, setting or argument that cannot work (unknown model, bad date, bad index params)."""

    exit_code = 2


class ModelUnavailableError(LookalikeError):
    """The model weights cannot be loaded (offline, missing file, wrong architecture)."""

    exit_code = 3


class StoreError(LookalikeError):
    """Milvus refused an operation or cannot be reached."""

    exit_code = 4


class DatabaseInUseError(StoreError):
    """Another process holds the Milvus Lite database open (Milvus Lite locks its folder)."""


class DimensionMismatchError(StoreError):
    """The model's embedding size differs from the collection's vector field."""


class ModelMismatchError(ConfigError):
    """The collection was embedded with another model than this process runs (its vectors cannot be compared)."""


class UnsupportedIndexError(ConfigError):
    """The vector index type is not supported by this Milvus engine."""


class CollectionNotFoundError(StoreError):
    """The collection does not exist yet (nothing has been indexed)."""


class ItemNotFoundError(LookalikeError):
    """No stored item has this id."""

    exit_code = 5


class ImageError(LookalikeError):
    """An image could not be read or decoded; the message is the reason shown to the user."""


class ExampleError(ConfigError):
    """A liked or unliked example of a search names nothing stored, or more than one thing (a request
    that cannot be processed as written: 422 in the API)."""


class CatalogError(ConfigError):
    """A catalog file is missing a required column or cannot be read."""


class PathRefusedError(ImageError):
    """A path the caller may not have read (outside the allowed folders); says nothing of its existence."""


class ClaimedError(LookalikeError):
    """Another reviewer holds the flag (its lease has not expired): deciding it now would race them."""

    exit_code = 6
