"""Turns `config.dataset` into a prepared TFDS builder, or fails fast saying what to do.

Project datasets (the digits builder and image folders) are prepared on first use, offline,
as ArrayRecord. Every other dataset must already be prepared in `tfds_data_dir`, as
ArrayRecord (random access is what keeps the saved data position a few integers): we check
for its files before anything could start a download, because TFDS's downloader retries for
minutes and can hang forever when the network does not answer.
"""

from __future__ import annotations

import contextlib
import io
import os

import tensorflow_datasets as tfds
from tensorflow_datasets.core.file_adapters import FileFormat

from vit_jax.data.digits import Digits
from vit_jax.data.errors import DatasetNotPreparedError, unknown_name_error
from vit_jax.data.image_folder import ImageFolder
from vit_jax.data.presets import DATASET_PRESETS, DatasetPreset

_PROJECT_BUILDERS = {"digits": Digits}


def is_path(name: str) -> bool:
    """Image-folder paths start like one, or are existing directories with a separator in them.

    A bare name is never a path, so a local folder called e.g. `cifar10` cannot shadow the
    preset; TFDS names such as `imagenet2012/5.1.0` are paths only if that directory exists.
    """
    return name.startswith(("/", "./", "../", "~")) or ("/" in name and os.path.isdir(name))


def _prepare(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> None:
    """Prepares a project builder; these never touch the network."""
    if not builder.is_prepared():
        print(f"Preparing {builder.name} in {builder.data_dir} (first use only).", flush=True)
        # TFDS prints "Downloading and preparing dataset Unknown size ..." and "... downloaded
        # and prepared": wrong here (nothing is downloaded), so they stay off the console.
        with contextlib.redirect_stdout(io.StringIO()):
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    manual_dir=manual_dir, try_download_gcs=False
                ),
                file_format=FileFormat.ARRAY_RECORD,
            )


def _not_prepared(
    name: str,
    builder_path: str,
    data_dir: str | None,
    preset: DatasetPreset | None,
    manual_dir: str | None,
    in_catalogue: bool = True,
) -> DatasetNotPreparedError:
    where = data_dir or "TFDS's default data dir (TFDS_DATA_DIR or ~/tensorflow_datasets)"
    if in_catalogue:
        how = (
            f"On a machine with internet access run `tfds build {name} --data_dir=<dir> "
            "--file_format=array_record`, "
            f"then copy <dir>/{name} into the tfds_data_dir of this machine."
        )
    else:
        how = (
            f"{name} is not in the public TFDS catalogue: prepare it with the TFDS builder you "
            f"have for it (e.g. big_vision's) and copy the {name}/<version> directory here."
        )
    if preset and preset.manual_download and in_catalogue:
        how += (
            f" {name} needs a manual download first: put its source files (see "
            f"https://www.tensorflow.org/datasets/catalog/{name}) into tfds_manual_dir "
            f"({manual_dir or 'not set'}) and add --manual_dir=<that dir> to the build command."
        )
    return DatasetNotPreparedError(
        f"Dataset {name!r} is not prepared in tfds_data_dir={where!r} (looked for "
        f"{builder_path}). vit_jax does not download datasets while training. {how} "
        "Or train offline on dataset='digits' or on an image-folder path."
    )


def find_builder(
    dataset: str, data_dir: str | None, manual_dir: str | None
) -> tuple[tfds.core.DatasetBuilder, DatasetPreset | None]:
    """The prepared builder for `dataset` and its preset (None when there is none)."""
    if is_path(dataset):
        builder = ImageFolder(dataset, data_dir=data_dir)
        _prepare(builder, manual_dir)
        return builder, None
    preset = DATASET_PRESETS.get(dataset)
    tfds_name = preset.tfds_name if preset else dataset
    if tfds_name in _PROJECT_BUILDERS:
        builder = _PROJECT_BUILDERS[tfds_name](data_dir=data_dir)
        _prepare(builder, manual_dir)
        return builder, preset
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        if preset:  # e.g. imagenet21k: not in the public catalogue, but may be copied in.
            path = os.path.join(data_dir or "<default data dir>", tfds_name)
            raise _not_prepared(tfds_name, path, data_dir, preset, manual_dir, False) from None
        names = [*tfds.list_builders(with_community_datasets=False), *DATASET_PRESETS]
        # `from None`: TFDS's own message lists the whole catalogue.
        raise unknown_name_error("dataset", dataset, names) from None
    if not builder.is_prepared():
        raise _not_prepared(tfds_name, str(builder.data_path), data_dir, preset, manual_dir)
    if FileFormat.ARRAY_RECORD not in builder.info.available_file_formats():
        raise _not_array_record(tfds_name, builder)
    return builder, preset


def _not_array_record(name: str, builder: tfds.core.DatasetBuilder) -> DatasetNotPreparedError:
    have = ", ".join(sorted(f.value for f in builder.info.available_file_formats())) or "unknown"
    return DatasetNotPreparedError(
        f"Dataset {name!r} in {builder.data_path} is prepared as {have}, but vit_jax reads "
        "ArrayRecord: random access lets every checkpoint save the data position as a few "
        "integers instead of a shuffle buffer. Convert it once, in place (the existing files "
        f"stay): `tfds convert_format --dataset_version_dir={builder.data_path} "
        "--out_file_format=array_record`, or rebuild it with `tfds build "
        f"{name} --file_format=array_record`."
    )
