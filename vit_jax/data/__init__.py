"""Input pipelines: TFDS / image folders / sharded TFRecords -> global, sharded jax.Arrays.

Config keys read by this package (`default_config()` returns them at these defaults):

  dataset = 'digits'       What to train on: a preset (cifar10, cifar100, imagenet2012,
                           oxford_iiit_pet, oxford_flowers102, imagenet21k, digits), any
                           prepared TFDS name, an image-folder path `<root>/{train,test}/
                           <class>/*.jpg|png`, or 'tfrecord:<dir>' (sharded TFRecords, see
                           vit_jax.data.tfrecords). 'digits' (scikit-learn's digits) is
                           prepared offline on first use.
  tfds_data_dir = None     Where TFDS datasets are prepared (None: TFDS's default). Datasets
                           other than digits and image folders must already be there.
  tfds_manual_dir = None   Manually downloaded source files, for builds that need them.
  batch = 512              GLOBAL training batch; a multiple of the data-axis devices.
  batch_eval = 512         GLOBAL evaluation batch; a multiple of the data-axis devices.
  shuffle_buffer = 50_000  Examples in the training shuffle buffer (per process).
  prefetch = 2             Batches transferred to the devices ahead of use.
  seed = 0                 Fixes shuffling, augmentation and mixup: same seed, same batches.
  pp.train = ''            Training split, e.g. 'train[:98%]' ('' = the preset's).
  pp.test = ''             Evaluation split, e.g. 'test' ('' = the preset's).
  pp.crop = 0              Image size fed to the model (0 = the preset's: 384, digits 32).
  pp.train_ops = ''        Per-example op string ('' = decode|inception_crop(crop)|flip_lr|
                           [randaug|]value_range(-1,1)|onehot(N)); see vit_jax.data.pp.
  pp.test_ops = ''         Eval op string ('' = decode|resize(crop)|value_range(-1,1)|onehot(N)).
  pp.aug = 'none'          AugReg recipe: none, light1, light2, medium1, medium2, strong1,
                           strong2 (RandAugment layers/magnitude and mixup alpha).
  pp.mixup_alpha = 0.0     Mixup Beta(alpha, alpha); 0 = the recipe's alpha (none by default).
  pp.label_smoothing = 0.0 Training label smoothing (eval targets are never smoothed).
  pp.multi_label = False   k-hot targets for several labels per image (sigmoid loss); must
                           be True for datasets that have several labels per image.
  pp.central_crop = False  Eval: resize the short side to crop*8/7 and take the centre
                           instead of resizing the whole image to crop x crop.

Custom `pp.train_ops` must apply RandAugment and label smoothing themselves; setting
`pp.aug` (with RandAugment) or `pp.label_smoothing` together with them is an error.
"""

from vit_jax.data.config import default_config
from vit_jax.data.errors import DataError, DatasetNotPreparedError, UnknownNameError
from vit_jax.data.info import DatasetInfo, get_dataset_info
from vit_jax.data.iterators import (
    EvalIterator,
    TrainIterator,
    make_eval_iterator,
    make_train_iterator,
)

__all__ = [
    "DataError",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "EvalIterator",
    "TrainIterator",
    "UnknownNameError",
    "default_config",
    "get_dataset_info",
    "make_eval_iterator",
    "make_train_iterator",
]
