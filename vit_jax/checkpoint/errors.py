"""The one exception of the checkpoint package, and where the published files live."""

from __future__ import annotations

from vit_jax.errors import VitJaxError

PUBLISHED_LOCATIONS = (
    "gs://vit_models/imagenet21k/, gs://vit_models/augreg/ "
    "(also over https as https://storage.googleapis.com/vit_models/imagenet21k/..., "
    "https://storage.googleapis.com/vit_models/augreg/...)"
)


class CheckpointError(VitJaxError, ValueError):
    """A checkpoint file that cannot be used: missing, unreadable, or not matching the model.

    The message always names the file and says what to do about it.
    """


class UnreachableError(CheckpointError):
    """Remote storage (gs://, s3://) that cannot be reached: no network, DNS or firewall."""
