"""The recipe schema: typed dataclasses, one per section, checked by `vdatrain.recipe.typecheck`.

`build(Recipe, data)` checks every value against its annotation and builds the dataclasses. An
unknown key, a missing required key or a wrong type is a `RecipeError` naming the dotted key;
numbers are checked against their `Bounds`; names of models, refinement strategies and mixes
against the registry that holds them (`OneOf`), so a typo in `model.name` is one line naming
the key before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, Optional

from vdatrain.recipe.typecheck import Bounds, OneOf, RecipeError, build, check_value  # noqa: F401


def _models():
    from vdatrain.models import MODELS
    return MODELS


def _refinements():
    from vdatrain.adapt.refine import REFINEMENTS
    return REFINEMENTS


def _mixes():
    from vdatrain.adapt.mix import MIXES
    return MIXES


ModelName = Annotated[str, OneOf(_models)]
RefinementName = Annotated[str, OneOf(_refinements)]
MixName = Annotated[str, OneOf(_mixes)]
PosInt = Annotated[int, Bounds(0, lo_open=True)]
NonNegInt = Annotated[int, Bounds(0)]
PosFloat = Annotated[float, Bounds(0, lo_open=True)]
NonNegFloat = Annotated[float, Bounds(0)]
Fraction = Annotated[float, Bounds(0, 1)]  # probabilities, shares, weights of a convex mix
OpenFraction = Annotated[float, Bounds(0, 1, lo_open=True)]  # (0, 1]: scales below one


@dataclass
class DataSpec:
    store: str  # a flowprep store
    crop: tuple[PosInt, PosInt] = (512, 512)  # (h, w) after resizing
    scale: PosFloat = 1.0  # resize before cropping (VIPER 4/3, Synthia 2)
    offsets: list[int] = field(default_factory=lambda: [0])
    flows: list[str] = field(default_factory=list)
    max_class_ratio: Optional[OpenFraction] = None  # source crops: 0.75 in the paper
    margins: bool = False  # pseudo-label margin mask (Cityscapes targets)
    # labels resized by `scale` with nearest neighbours: floor(x / scale), OpenCV's resize (the reference), or the
    # nearest pixel centre, as the device crops sample masks
    label_resize: Literal["floor", "centre"] = "floor"


@dataclass
class HRDASpec:
    """Multi-resolution fusion (`vdatrain/models/hrda.py`); BDD targets: detail_crop 360, detail_stride 180."""
    context_scale: OpenFraction = 0.5
    detail_crop: tuple[PosInt, PosInt] = (512, 512)  # training detail box; inference detail windows
    detail_stride: tuple[PosInt, PosInt] = (256, 256)  # inference detail windows
    detail_loss_weight: Fraction = 0.1  # L = (1 - w) CE(fused) + w CE(detail)
    box_grid: PosInt = 8  # detail box corners on this pixel lattice


@dataclass
class ACCELSpec:
    """Two-frame model (`vdatrain/models/accel.py`): frame t fused with frame t+k's warped logits.
    Source, target and eval stores need the pair's flow and frame (source/target `offsets`, `flows`)."""
    pair: str = "bwd_1"  # target and eval flow from frame t to the other frame (bwd_1: t -> t-1; BDDVid: bwd_2)
    source_pair: Optional[str] = None  # the source's, when its frame distance differs (VIPER -> BDDVid: bwd_1)
    fusion_lr: Literal["backbone", "head"] = "backbone"  # the fusion conv's rate (reference: not under "head")


@dataclass
class BackboneSpec:
    """A timm model as the backbone of `model.name: daformer_timm` (`vdatrain/models/timm_backbone.py`)."""
    timm: str  # any timm model name, e.g. vit_large_patch16_dinov3, vit_base_patch14_reg4_dinov2, convnext_base
    pyramid: Literal["simple", "none"] = "simple"  # plain ViTs: maps at p/4..2p from four blocks, or one at p
    blocks: Optional[list[NonNegInt]] = None  # plain ViTs: the blocks that feed the levels (default: 4 evenly spaced)
    drop_path: Fraction = 0.1  # stochastic depth rate of the last block (timm's drop_path_rate)
    patch_size: Optional[PosInt] = None  # rebuild the patch embedding at this size (DINOv2's 14 -> 16)
    # the grid the position embedding is kept at (pixels; timm's default: the pretraining size); it is
    # interpolated to every input's grid, so this only decides where a file's embedding is resampled on loading
    img_size: Optional[PosInt] = None
    # plain ViTs' architecture, changed (narrow check networks, tests, a small model of a family)
    embed_dim: Optional[PosInt] = None
    depth: Optional[PosInt] = None
    num_heads: Optional[PosInt] = None

    def narrow(self) -> "BackboneSpec":
        """The same architecture at a fraction of its width and depth, for `vdatrain check --narrow`."""
        return BackboneSpec(**{**self.__dict__, "embed_dim": 32, "depth": 2, "num_heads": 2, "blocks": None,
                               "drop_path": self.drop_path})


@dataclass
class ModelSpec:
    name: ModelName = "deeplabv2_r101"  # vdatrain.models.MODELS
    num_classes: PosInt = 19
    pretrained: Optional[str] = None  # ImageNet backbone weights (local file)
    init: Optional[str] = None  # whole-model weights to start from: a vdatrain or mmseg checkpoint
    hrda: Optional[HRDASpec] = None
    accel: Optional[ACCELSpec] = None
    checkpointing: bool = False  # activation checkpointing of the backbone stages: less memory, same results
    backbone: Optional[BackboneSpec] = None  # the timm model of daformer_timm


@dataclass
class AugmentSpec:
    """DACS strong augmentation of mixed and MIC images (`vdatrain/adapt/augment.py`); defaults: the reference's."""
    jitter_p: Fraction = 0.8  # colour jitter applied with this probability
    brightness: NonNegFloat = 0.2  # additive, on 0..1 intensities
    contrast: Fraction = 0.2
    saturation: Fraction = 0.2
    hue: Annotated[float, Bounds(0, 0.5)] = 0.2
    blur_p: Fraction = 0.5
    blur_sigma: tuple[PosFloat, PosFloat] = (0.15, 1.15)
    # kornia05: the reference's kornia 0.5 ops (contrast multiplies, saturation scales HSV's S);
    # torchvision: blend-based contrast and saturation (PIL's definitions)
    jitter: Literal["kornia05", "torchvision"] = "kornia05"
    blur_kernel: Literal["round_down", "round_up"] = "round_down"  # an even ceil(0.1 side) made odd: -1 or +1
    coins: Literal["batch", "image"] = "batch"  # the jitter and blur coins: once per batch (reference) or per image
    # a two-frame model's frame t+k, mixed with frame t: augmented in a call of its own, every draw independent
    # (the reference), or with frame t's draws
    frames: Literal["independent", "shared"] = "independent"


@dataclass
class RCSSpec:
    """Rare class sampling of source samples from the store's class counts."""
    temperature: PosFloat = 0.01
    min_pixels: NonNegInt = 3000  # a sample qualifies for class c with more pixels of c (native resolution)
    min_crop_ratio: NonNegFloat = 0.5  # re-crop until the crop holds > min_pixels * this of c (HRDA 1024 crops: 2.0)
    retries: NonNegInt = 10


@dataclass
class FDSpec:
    """ImageNet feature distance on thing-class cells of the source (context branch under HRDA)."""
    weight: NonNegFloat = 0.005
    classes: list[int] = field(default_factory=lambda: [6, 7, 11, 12, 13, 14, 15, 16, 17, 18])
    majority: Fraction = 0.75  # a feature cell takes a class covering at least this share of its pixels


@dataclass
class MICSpec:
    """Masked image consistency on the augmented target."""
    block: PosInt = 64  # mask block side in pixels
    mask_ratio: Fraction = 0.7  # fraction of blocks zeroed
    weight: NonNegFloat = 1.0
    # round(side / block) cells stretched over the side (the reference: 11 cells of 65.5 px at 720), or
    # ceil(side / block) cells of exactly `block` px
    grid: Literal["round", "ceil"] = "round"
    # the jitter order and blur sigma of the masked images' augmentation: one draw for the batch (the reference's
    # one call on the batch) or one per image
    augment_draws: Literal["batch", "image"] = "batch"


@dataclass
class RefineSpec:
    """Pseudo-label refinement with optical flow (`vdatrain/adapt/refine.py`); the reference's values.
    oracle_warped: the reference code's oracle (Tables 5-8); oracle: the paper's text."""
    strategy: RefinementName = "consistency"  # vdatrain.adapt.refine.REFINEMENTS
    pair: str = "bwd_1"  # target flow from t to the other frame: bwd_k (past) or fwd_k (future)
    # pixels without a valid warp: frame t's in the bottom and side strips (reference), everywhere, or nowhere
    invalid: Literal["reference_strips", "frame_t", "ignore"] = "reference_strips"
    weight: Literal["warped", "frame_t"] = "warped"  # a warped label's weight: t+k's warped (reference) or t's
    start_iter: NonNegInt = 1500  # the mixed (ClassMix) target loss is off before this iteration (MIC is not)


@dataclass
class VideoDiscSpec:
    """DA-VSN video discriminator (`vdatrain/adapt/video_discriminator.py`) on predictions of t and t+k."""
    pair: str = "bwd_1"  # the target's other frame (its offset must be in target.offsets)
    source_pair: Optional[str] = None  # the source's, when its frame distance differs
    weight: NonNegFloat = 1.0e-4  # adversarial weight of the network's loss: the reference code's (the paper's text: 0.1)
    softmax: Literal["joint", "per_frame"] = "joint"  # one softmax over both frames' 2C logits (reference) or each
    scale: OpenFraction = 0.5  # the frames' logits resized to this x the crop before the discriminator (reference 0.5)
    # the student's frames t and t+k: each in a forward of its own (the reference), or stacked in one (BatchNorm
    # then normalises both frames together)
    forwards: Literal["separate", "joint"] = "separate"
    # a two-frame (ACCEL) student is judged on its fused logits, each frame with its own partner (t+k needs
    # frame t+2k and its flow; the reference), or on single-frame logits
    judge: Literal["fused", "frame"] = "fused"
    own_loss_scale: NonNegFloat = 0.1  # the discriminator's own loss x this (the reference's adv_scale 0.1)
    lr: PosFloat = 1.0e-4  # the discriminator's own Adam
    betas: tuple[Fraction, Fraction] = (0.9, 0.99)
    power: NonNegFloat = 0.9  # poly schedule lr (1 - it / iters) ** power


@dataclass
class AdaptSpec:
    """Self-training (DACS) with switchable parts; null disables an optional part."""
    ema_alpha: Fraction = 0.999
    pseudo_threshold: Fraction = 0.968
    mix: MixName = "classmix"  # vdatrain.adapt.mix.MIXES
    # ClassMix's candidate classes include the void label 255 (the reference: void pixels can be pasted), or not
    mix_ignore: Literal["candidate", "excluded"] = "candidate"
    # the EMA teacher's BatchNorm statistics in a prediction: of all its sliding detail windows (and, for a
    # two-frame teacher, of frames t and t+k) together, as one forward (the reference), or per window and frame
    teacher_statistics: Literal["joint", "per_window"] = "joint"
    augment: Optional[AugmentSpec] = field(default_factory=AugmentSpec)
    rcs: Optional[RCSSpec] = None
    fd: Optional[FDSpec] = None
    mic: Optional[MICSpec] = None
    refine: Optional[RefineSpec] = None
    consistent_mix: bool = False  # with model.accel: one ClassMix mask for both frames, mixed flow
    video_disc: Optional[VideoDiscSpec] = None


@dataclass
class OptimSpec:
    lr: PosFloat = 6e-5
    head_lr_mult: PosFloat = 10.0
    weight_decay: NonNegFloat = 0.01
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    # no weight decay for: names holding "norm" (reference: MiT's LayerNorms; BatchNorms keep it), or every norm
    norm_weight_decay: Literal["by_name", "zero"] = "by_name"
    warmup_iters: NonNegInt = 1500
    warmup_ratio: OpenFraction = 1e-6  # mmseg's: the warm-up starts at this fraction of each group's rate
    grad_clip: Optional[PosFloat] = None
    # layer-wise learning-rate decay of the backbone: layer l of L takes lr * layer_decay ** (L - l) (BEiT's rule;
    # ViTs: l = 0 embeddings, 1..depth blocks; ResNet and MiT: their stem and 4 stages); 1: off (the paper's)
    layer_decay: OpenFraction = 1.0


@dataclass
class TrainSpec:
    iters: PosInt = 40000
    batch_size: PosInt = 2
    workers: NonNegInt = 4
    seed: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    # TF32 for matrix multiplies and convolutions on Ampere and newer GPUs (the reference's torch 1.7.1 default);
    # false: full fp32 (what the Turing GPUs of HRDA's paper computed)
    tf32: bool = True
    cudnn_benchmark: bool = True  # cuDNN picks the fastest algorithm per input shape (the reference's configs)
    channels_last: bool = False  # NHWC memory layout of the model (faster convolutions under bf16 on GPUs)
    log_every: PosInt = 50
    eval_every: NonNegInt = 4000
    checkpoint_every: PosInt = 2000
    # history beside the rolling checkpoint.pt: iter_<N>.pt of the last this-many checkpoints (0: none)
    keep_checkpoints: NonNegInt = 0
    # check every chunk against its checksum record on first read (a flipped byte stops the run naming the
    # file); costs one extra read of each chunk per DataLoader worker
    verify_reads: bool = False
    # how long a collective may wait for the slowest process under torchrun (evaluation is sharded, so no
    # process waits a whole evaluation); NCCL's own default is 10 minutes
    dist_timeout_min: PosFloat = 30.0


@dataclass
class EvalSpec:
    store: str
    classes: Literal["all19", "viper", "synthia-seq"] = "all19"
    protocol: Literal["standard", "unifiedvideoda"] = "standard"
    window: tuple[PosInt, PosInt] = (1024, 1024)
    stride: tuple[PosInt, PosInt] = (512, 512)
    # sliding windows predicted per forward (evaluation mode: the same result as one at a time, to float
    # rounding; a Cityscapes or BDD image has 3)
    window_batch: PosInt = 3


@dataclass
class Recipe:
    name: str
    model: ModelSpec
    source: DataSpec
    eval: EvalSpec
    data_root: str = "."  # store paths are relative to it; absolute once loaded (recipe/load.py says from where)
    description: str = ""
    label: str = ""  # the row of `vdatrain report` tables (default: the name)
    # the user's modules that register models, strategies, mixes or weight formats (module names or .py files
    # beside the recipe), imported before the recipe is validated
    imports: list[str] = field(default_factory=list)
    target: Optional[DataSpec] = None
    adapt: Optional[AdaptSpec] = None
    optim: OptimSpec = field(default_factory=OptimSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
