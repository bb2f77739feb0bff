"""The one configuration schema: every knob of data, model, training, evaluation, gate,
export, serving and monitoring. Loaded from a profile YAML, an optional user YAML and dotted
``key=value`` overrides. Unknown keys and bad values are errors that name the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rxvision.errors import RxVisionError

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
PROFILES = ("demo", "full")


class _Strict(BaseModel):
    """Base for every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- data
class SyntheticConfig(_Strict):
    num_classes: int = Field(12, ge=2, le=64)
    images_per_class: int = Field(200, ge=4)
    image_size: int = Field(160, ge=32, le=1024)
    seed: int = 0
    # processes used to draw the images; None = one per CPU core (capped at 8)
    workers: int | None = Field(None, ge=1)


class SplitConfig(_Strict):
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    seed: int = 42


class ValidationConfig(_Strict):
    # fail: stop and name the offending files; skip: exclude them and list them in the report.
    policy: Literal["fail", "skip"] = "fail"
    # convert: non-RGB images (grayscale, RGBA, palette, CMYK, 16-bit) are converted to RGB;
    # flag: they count as problems under `policy`.
    color_mode_policy: Literal["convert", "flag"] = "convert"
    min_resolution: int = Field(32, ge=1, description="minimum of width and height, pixels")
    min_images_per_class: int = Field(5, ge=1)
    # largest / smallest class. Above warn_imbalance_ratio the run goes on with a warning in the
    # report (real sets are imbalanced: rare pills; training selects checkpoints by macro-F1
    # and the gate compares against always answering the majority class);
    # above max_imbalance_ratio it is a problem under `policy` (a class that rare is more
    # likely a labelling or export mistake than a real share).
    warn_imbalance_ratio: float = Field(3.0, ge=1.0, description="largest / smallest class")
    max_imbalance_ratio: float = Field(100.0, ge=1.0, description="largest / smallest class")
    # header: cheap check (PIL verify); full: decode every image (finds truncation).
    decode: Literal["header", "full"] = "full"


# Named augmentation recipes: each fills the AugmentationConfig keys a user did not set.
#   none: resize only. light: horizontal flips only (objects with an up, e.g. photos of scenes).
#   flips: horizontal and vertical flips only: lossless (no interpolation, no border to fill,
#     no colour change), the bare fine-tuning script's augmentation; the real-data recipe's.
#   orientation_free: objects with no "up" (pills, parts seen from above): flips, 90-degree
#     turns, any rotation, mild brightness/contrast; no random crop, so nothing the label
#     depends on (an imprint, a defect at the edge) is cut away or stretched.
#   strong: random resized crops down to 60% of the area, shifts/zoom, colour jitter: for data
#     that is plentiful or synthetic (the demo pills), where variety matters more than detail.
_NO_AUGMENTATION = {
    "scale_min": 1.0,
    "hflip": 0.0,
    "vflip": 0.0,
    "rotate90": 0.0,
    "affine": 0.0,
    "color_jitter": 0.0,
}
AUGMENTATION_PRESETS: dict[str, dict[str, float]] = {
    "none": dict(_NO_AUGMENTATION),
    "light": {**_NO_AUGMENTATION, "hflip": 0.5},
    "flips": {**_NO_AUGMENTATION, "hflip": 0.5, "vflip": 0.5},
    "orientation_free": {
        "scale_min": 1.0,
        "hflip": 0.5,
        "vflip": 0.5,
        "rotate90": 0.5,
        "affine": 0.5,
        "shift_limit": 0.0,
        "scale_limit": 0.0,
        "rotate_limit": 180.0,
        "color_jitter": 0.5,
        "brightness": 0.1,
        "contrast": 0.1,
        "saturation": 0.0,
        "hue": 0.0,
    },
    "strong": {},  # the field defaults below
}


class AugmentationConfig(_Strict):
    # the recipe the other keys start from; keys set explicitly win over the preset
    preset: Literal["none", "light", "flips", "orientation_free", "strong"] = "strong"
    scale_min: float = Field(0.6, gt=0, le=1, description="1.0: no random crop")
    hflip: float = Field(0.5, ge=0, le=1)
    vflip: float = Field(0.5, ge=0, le=1)
    rotate90: float = Field(0.5, ge=0, le=1)
    affine: float = Field(0.5, ge=0, le=1)
    shift_limit: float = Field(0.05, ge=0, le=0.5, description="Affine translate, share of side")
    scale_limit: float = Field(0.1, ge=0, lt=1, description="Affine zoom +- this share")
    rotate_limit: float = Field(180.0, ge=0, le=180, description="Affine rotation, degrees")
    color_jitter: float = Field(0.5, ge=0, le=1)
    brightness: float = Field(0.2, ge=0)
    contrast: float = Field(0.2, ge=0)
    saturation: float = Field(0.2, ge=0)
    hue: float = Field(0.05, ge=0, le=0.5)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in AUGMENTATION_PRESETS:
            data = {**AUGMENTATION_PRESETS[data["preset"]], **data}
        return data


class LoaderConfig(_Strict):
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=0)
    pin_memory: bool = True
    persistent_workers: bool = True
    # drop the last incomplete training batch (a batch of 1 breaks BatchNorm); never for eval
    drop_last: bool = True
    prefetch_factor: int = Field(2, ge=1)


class DataConfig(_Strict):
    source: Literal["synthetic", "imagefolder", "csv"] = "synthetic"
    # imagefolder: a directory with one subfolder per class; csv: a manifest path,label[,split].
    path: Path | None = None
    # where generated data and other caches go; None = $RXVISION_HOME/cache if set,
    # else ~/.cache/rxvision
    cache_dir: Path | None = None
    # the known class list; labels outside it are reported by validation (unknown_label).
    # None = the classes found in the source.
    classes: list[str] | None = None
    image_size: int = Field(128, ge=32, le=1024, description="model input side, pixels")
    synthetic: SyntheticConfig = SyntheticConfig()
    split: SplitConfig = SplitConfig()
    validation: ValidationConfig = ValidationConfig()
    augmentation: AugmentationConfig = AugmentationConfig()
    loader: LoaderConfig = LoaderConfig()

    @model_validator(mode="after")
    def _path_needed(self) -> DataConfig:
        if self.source != "synthetic" and self.path is None:
            raise ValueError(f"data.path is required when data.source is '{self.source}'")
        return self


# -------------------------------------------------------------------------- model
class ModelConfig(_Strict):
    backbone: str = "tf_efficientnet_lite0"
    pretrained: bool = True
    # auto: local file if given, else the offline package (if it has this backbone), else hub.
    weights: Literal["auto", "hub", "package", "file"] = "auto"
    weights_path: Path | None = None
    head: Literal["linear", "attention"] = "linear"
    attention_heads: int = Field(8, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    freeze_backbone: bool = False
    # gradual unfreezing: epoch at which a frozen backbone is trained too (None = never).
    unfreeze_at_epoch: int | None = Field(None, ge=0)
    # the backbone's first N stages (the stem counts as one) keep their pretrained weights,
    # also after unfreezing: backpropagation stops above them, where feature maps are largest
    freeze_stages: int = Field(0, ge=0)


# ----------------------------------------------------------------------- training
class OptimizerConfig(_Strict):
    name: Literal["adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    # discriminative fine-tuning: the backbone learns at lr * backbone_lr_scale, the head at lr
    backbone_lr_scale: float = Field(1.0, gt=0, le=1)


class SchedulerConfig(_Strict):
    # cosine_warm_restarts: warmup, then cosine cycles of T_0 * T_mult^i epochs;
    # cosine: linear warmup, then one cosine over the rest of the run down to eta_min;
    # onecycle: torch's OneCycleLR over the run (warmup share pct_start), ends near eta_min.
    # cosine and onecycle span the run's epoch count (refitted by training.time_budget_s).
    name: Literal["cosine_warm_restarts", "cosine", "onecycle", "none"] = "cosine_warm_restarts"
    T_0: int = Field(10, ge=1)
    T_mult: int = Field(2, ge=1)
    eta_min: float = Field(1e-6, ge=0)
    warmup_epochs: int = Field(0, ge=0)
    # onecycle only: share of the run spent rising to the peak lr
    pct_start: float = Field(0.25, gt=0, lt=1)
    # step: the lr moves after every optimizer update (T_0/warmup counted in epochs' worth of
    # updates); epoch: it moves once per epoch.
    interval: Literal["step", "epoch"] = "step"


class EarlyStoppingConfig(_Strict):
    enabled: bool = True
    monitor: str = "val_macro_f1"
    mode: Literal["min", "max"] = "max"
    patience: int = Field(10, ge=1)
    min_delta: float = Field(1e-4, ge=0)


class CheckpointConfig(_Strict):
    monitor: str = "val_macro_f1"
    mode: Literal["min", "max"] = "max"
    save_top_k: int = Field(1, ge=1)
    # the weights a run returns: "best", the epoch that scored best on `monitor` (with early
    # stopping), or "last", the final epoch's (a schedule that anneals to ~0 ends at its
    # best, while the best of many noisy scores on a small validation split is partly luck)
    select: Literal["best", "last"] = "best"


class EmaConfig(_Strict):
    """An exponential moving average of the weights (timm's ModelEmaV3), validated beside the
    raw weights each epoch; the best checkpoint is whichever of the two scores better."""

    enabled: bool = False
    decay: float = Field(0.999, gt=0, lt=1)
    # warmup: the decay grows with the update count (1 - (1 + step)^-2/3), so the average is
    # not dominated by the random-ish first weights on short runs
    warmup: bool = True


class TrainingConfig(_Strict):
    epochs: int = Field(6, ge=1)
    seed: int = 0
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    # balanced: sklearn's n / (k * count); auto: balanced when the training split's largest /
    # smallest class >= class_weights_min_ratio (and sampler is not balanced), else none.
    class_weights: Literal["none", "balanced", "auto"] = "none"
    class_weights_min_ratio: float = Field(1.5, ge=1)
    # shuffle: every image once per epoch; balanced: each class drawn equally often (with
    # replacement, epoch-sized), the same draw for a given (seed, epoch) on every run and rank.
    sampler: Literal["shuffle", "balanced"] = "shuffle"
    mixup_alpha: float = Field(0.0, ge=0, description="0 disables mixup")
    cutmix_alpha: float = Field(0.0, ge=0, description="0 disables cutmix")
    grad_clip_norm: float | None = Field(1.0, gt=0, description="global L2 norm; None disables")
    accumulate_grad_batches: int = Field(1, ge=1)
    # 32: fp32; 16: fp16 autocast + GradScaler (CUDA only); bf16: bf16 autocast (CPU or CUDA);
    # auto: bf16 where the GPU supports it; on a CPU with avx512_bf16 / AMX, whichever of
    # bf16 and fp32 a short probe of the model measures faster; fp32 elsewhere.
    precision: Literal["32", "16", "bf16", "auto"] = "32"
    # model and input batches in NHWC (channels_last) memory format
    channels_last: bool = False
    # fine-tuning on small batches: keep BatchNorm running statistics as pretrained (BN layers
    # in eval mode while training; their affine weights still learn) ...
    freeze_bn_stats: bool = False
    # ... or update them more slowly (BatchNorm momentum; None = each layer's own, 0.1)
    bn_momentum: float | None = Field(None, gt=0, le=1)
    ema: EmaConfig = EmaConfig()
    # wall-clock budget of the fit loop: epoch 1 is timed, then the epoch count is cut so the
    # rest fits (never above `epochs`) and cosine/onecycle schedules are rebuilt for it.
    time_budget_s: float | None = Field(None, gt=0)
    # resume an interrupted run of the same config and data (run.py --no-resume: start over)
    resume: bool = True
    accelerator: Literal["auto", "cpu", "cuda"] = "auto"
    # N > 1 trains with N DDP processes (gloo on CPU, NCCL on CUDA).
    devices: int = Field(1, ge=1)
    # CPU threads per process; None = torch's default.
    num_threads: int | None = Field(None, ge=1)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()

    @model_validator(mode="before")
    @classmethod
    def _precision_as_text(cls, data: Any) -> Any:
        # YAML reads `precision: 16` as an int; the schema's values are strings.
        if isinstance(data, dict) and isinstance(data.get("precision"), int):
            data = {**data, "precision": str(data["precision"])}
        return data


# --------------------------------------------------------------------- evaluation
class EvaluationConfig(_Strict):
    top_k: int = Field(3, ge=1)
    calibration_bins: int = Field(15, ge=2)
    bootstrap_samples: int = Field(1000, ge=0, description="0 disables the intervals")
    confidence_level: float = Field(0.95, gt=0, lt=1)
    seed: int = 0
    # where evaluation predicts: auto = cuda when PyTorch sees a GPU, else cpu
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # flip: test-time augmentation, logits averaged over the image and its horizontal flip
    tta: Literal["none", "flip"] = "none"
    # prediction sets (split conformal on the validation split) hold the true label this often
    coverage: float = Field(0.95, gt=0, lt=1)
    # a calibrated top-1 probability below this makes an answer uncertain
    confidence_threshold: float = Field(0.5, ge=0, le=1)
    # share of calibration images answered unknown (sets the OOD score threshold)
    unknown_rate: float = Field(0.01, gt=0, lt=1)
    # behavioural tests: transforms under which the label should not change
    invariance: list[Literal["hflip", "rot90", "jpeg70", "brightness"]] = [
        "hflip",
        "rot90",
        "jpeg70",
        "brightness",
    ]
    # worst mistakes shown with their class-activation maps in the report (0: none)
    gallery_size: int = Field(8, ge=0, le=64)


class GateConfig(_Strict):
    """Quality gate: absolute floors AND (champion/challenger) better than production."""

    min_accuracy: float = Field(0.9, ge=0, le=1)
    min_macro_f1: float = Field(0.9, ge=0, le=1)
    max_ece: float = Field(0.1, ge=0, le=1)
    # challenger must beat the champion's macro_f1 on the same test split by at least this
    min_gain: float = Field(0.0, ge=0, le=1)
    # ... and McNemar's test must not say the challenger is significantly worse at this level.
    mcnemar_alpha: float = Field(0.05, gt=0, lt=1)
    compare_metric: Literal["macro_f1", "accuracy"] = "macro_f1"
    # the candidate's accuracy AND macro-F1 must each beat always answering the test split's
    # largest class by more than this (on an imbalanced set a floor alone can be met that way)
    majority_margin: float = Field(0.0, ge=0, lt=1)
    # optional: test-split coverage of the prediction sets >= evaluation.coverage - this
    coverage_tolerance: float | None = Field(None, ge=0, lt=1)
    # optional: share of test images whose label survives a transform, e.g. {hflip: 0.98}
    min_invariance: dict[
        Literal["hflip", "rot90", "jpeg70", "brightness"], Annotated[float, Field(ge=0, le=1)]
    ] = {}
    # optional: every class with test images reaches this accuracy (recall)
    min_class_accuracy: float | None = Field(None, ge=0, le=1)


# ------------------------------------------------------------------------- export
class ExportConfig(_Strict):
    formats: list[Literal["onnx", "torchscript", "int8"]] = ["onnx", "torchscript", "int8"]
    opset: int = Field(17, ge=13)
    # torchscript: torch's TorchScript-based ONNX exporter (fast, robust offline);
    # dynamo: the new one
    onnx_exporter: Literal["torchscript", "dynamo"] = "torchscript"
    parity_atol: float = Field(1e-3, gt=0)
    # int8 / TensorRT fp16 must agree with PyTorch's top-1 label on this share of images
    approx_min_top1_agreement: float = Field(0.95, ge=0, le=1)
    # images from the test split used for parity and the int8 accuracy change
    parity_images: int = Field(64, ge=1)
    profile_batch_sizes: list[int] = [1, 8, 16, 32]
    profile_iterations: int = Field(20, ge=1)
    profile_warmup: int = Field(2, ge=0)
    # TensorRT fp16 is profiled only where CUDA and TensorRT exist; otherwise marked unavailable
    tensorrt: bool = True


# ------------------------------------------------------------------------ serving
class ServingConfig(_Strict):
    runtime: Literal["auto", "onnx", "torch"] = "auto"
    max_batch_size: int = Field(32, ge=1)
    max_latency_ms: int = Field(100, ge=1)
    top_k: int = Field(3, ge=1)
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1024, description="decompression-bomb limit")
    max_images_per_request: int = Field(32, ge=1)
    monitoring: bool = True
    # traffic log folder (BentoML monitoring output); None = <bentoml home>/monitoring
    log_dir: Path | None = None
    log_max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    log_backups: int = Field(5, ge=0)
    port: int = Field(3000, ge=1, le=65535)
    # requests in flight per worker before new ones are answered 503 + Retry-After
    max_in_flight: int = Field(256, ge=1)
    # adaptive batching of the model API (false: one inference per request; for comparison)
    batching: bool = True
    retry_after_s: int = Field(1, ge=1)
    # BentoML traffic timeout per request, seconds
    request_timeout_s: int = Field(60, ge=1)
    # worker processes of the service, each with one model copy and its own batcher;
    # None: one per CPU core with ONNX Runtime, one with PyTorch on CUDA
    workers: int | None = Field(None, ge=1)
    # intra-op threads of the inference runtime per worker; None: the cores split over workers
    threads: int | None = Field(None, ge=1)
    # model calls in flight per worker; None: cores // threads on CPU, 1 on CUDA
    concurrent_batches: int | None = Field(None, ge=1)
    # let idle inference threads spin-wait for work (ONNX Runtime's default): faster alone,
    # but in the service they take CPU from decoding and HTTP handling
    spin_wait: bool = False
    # per image: longest side / shortest side (a 1 x 100,000 px strip is refused)
    max_aspect_ratio: float = Field(20.0, ge=1)
    # pixels of all images of one request together (decoded RGB is 3 bytes a pixel)
    max_request_pixels: int = Field(100_000_000, ge=1024)
    # request body cap, checked before the body is parsed (Content-Length and chunked)
    max_request_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # seconds a client may take to send its whole body before it is answered 408
    body_timeout_s: float = Field(30.0, gt=0)
    # interface the deployed service listens on; 0.0.0.0 exposes it to the network
    host: str = "127.0.0.1"
    # with an API key set (RXVISION_API_KEY or RXVISION_API_KEY_FILE), /metrics needs it too
    # unless this is true; /livez, /readyz and /healthz are always open
    metrics_public: bool = False
    # origins (scheme://host[:port]) whose browser pages may POST; others are refused 403
    cors_origins: list[str] = []
    # consecutive failures of the primary model before its breaker opens (calls go to the
    # fallback), and seconds before one call tries the primary again
    breaker_failures: int = Field(3, ge=1)
    breaker_reset_s: float = Field(30.0, gt=0)
    # POST /explain (Grad-CAM PNG of one image): loads the bundle with torch in each worker
    explain: bool = False


# --------------------------------------------------------------------- monitoring
class MonitoringConfig(_Strict):
    window: str = "24h"
    min_rows: int = Field(50, ge=1)
    # Evidently's per-column drift method (e.g. ks, wasserstein, psi, jensenshannon); None:
    # Evidently chooses by type and sample size (KS/chi-square <= 1000 rows, else distances).
    drift_method: str | None = None
    # a column drifts when that method's score crosses this threshold (p-value methods: at
    # or below; distance methods: at or above); None: the method's own default.
    drift_threshold: float | None = Field(None, gt=0)
    # the dataset drifts when at least this share of columns drift
    drift_share: float = Field(0.3, gt=0, le=1)
    # confidence drop (mean confidence reference - current) that alone counts as drift
    max_confidence_drop: float = Field(0.1, gt=0, le=1)
    # rise of the uncertain / unknown answer share over the evaluation's rates
    # (uncertain_rate / unknown_rate of the model version) that alone counts as drift
    max_uncertain_rise: float = Field(0.15, gt=0, le=1)
    max_unknown_rise: float = Field(0.1, gt=0, le=1)
    embedding_components: int = Field(4, ge=0)
    # share of served images the service logs for drift (1.0: all; lower bounds its cost)
    traffic_sample_rate: float = Field(1.0, gt=0, le=1)


# ------------------------------------------------------------------------- tuning
class SearchParamConfig(_Strict):
    """One dimension of a tuning search space: a range (``low``/``high``, optionally ``log``
    or ``step``) or a list of ``choices``. Whether a range is drawn as int or float follows
    the type of the config key it sets (rxvision.tuning.space)."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchParamConfig:
        has_range = self.low is not None or self.high is not None
        if self.choices is not None:
            if has_range or self.log or self.step is not None:
                raise ValueError("give either choices or low/high (with log or step), not both")
            if not self.choices:
                raise ValueError("choices must not be empty")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high (or give choices)")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class PrunerConfig(_Strict):
    # median: stop a trial whose metric at an epoch is worse than the median of earlier
    # trials at that epoch (Optuna's MedianPruner); none: every trial runs to the end.
    name: Literal["median", "none"] = "median"
    # trials that always run to the end before pruning starts
    n_startup_trials: int = Field(2, ge=0)
    # epochs of each trial that are never pruned
    n_warmup_steps: int = Field(1, ge=0)


def _default_search_space() -> dict[str, SearchParamConfig]:
    return {
        "training.optimizer.lr": SearchParamConfig(low=1e-4, high=1e-2, log=True),
        "training.optimizer.weight_decay": SearchParamConfig(low=1e-6, high=1e-2, log=True),
        "training.label_smoothing": SearchParamConfig(low=0.0, high=0.2),
    }


class TuningConfig(_Strict):
    """Hyperparameter search (``python run.py --pipeline tuning``) with Optuna: each trial is
    one training run scored on the validation split; the study lives in a database."""

    # the same name continues the same study (its trials and sampler history)
    study_name: str = Field("rxvision", min_length=1)
    # an SQLAlchemy URL (postgresql://..., mysql://...); ${VAR} is expanded where the trials
    # run, so a password can come from the environment. None: sqlite at
    # $RXVISION_HOME/optuna.db (local orchestrator only).
    storage: str | None = None
    # trials this run adds to the study, and a wall-clock budget after which no new trial starts
    n_trials: int = Field(10, ge=1)
    timeout_s: float | None = Field(1800.0, gt=0)
    # a training-history key (val_macro_f1, val_accuracy, val_loss, ...)
    metric: str = "val_macro_f1"
    direction: Literal["maximize", "minimize"] = "maximize"
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0
    pruner: PrunerConfig = PrunerConfig()
    # dotted config key (or `augmentation_strength`) -> range or choices
    search_space: dict[str, SearchParamConfig] = Field(default_factory=_default_search_space)
    # parameter sets tried first, e.g. the current recipe (each once per study)
    enqueue: list[dict[str, Any]] = []
    # keep each trial's checkpoints under $RXVISION_HOME/runs/tuning/ (default: deleted)
    keep_trial_runs: bool = False


# ---------------------------------------------------------------------- kubernetes
class KubernetesConfig(_Strict):
    """The service on a Kubernetes cluster (rxvision.deploy.k8s renders Deployment, Service
    and HorizontalPodAutoscaler from it; the image is the Bento's)."""

    name: str = Field("rxvision", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=50)
    namespace: str = Field("rxvision", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    # the containerized Bento, e.g. registry.example.com/rxvision:<bento version>
    image: str | None = None
    replicas: int = Field(2, ge=1)
    min_replicas: int = Field(2, ge=1)
    max_replicas: int = Field(8, ge=1)
    target_cpu_utilization: int = Field(70, ge=1, le=100)
    cpu_request: str = "2"
    memory_request: str = "2Gi"
    cpu_limit: str | None = None
    memory_limit: str | None = "4Gi"
    gpu_count: int = Field(0, ge=0)
    # a Secret holding the API key the service checks (RXVISION_API_KEY); None: no key
    api_key_secret: str | None = "rxvision-api-key"
    api_key_secret_key: str = "api-key"
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    node_selector: dict[str, str] = Field(default_factory=dict)
    # the deployment pipeline applies the manifests (server-side apply) only when this is true
    # and the cluster answers; otherwise it prints the `kubectl apply` line
    apply: bool = False
    # the kubeconfig context to apply with (None: the current one; in-cluster inside a pod)
    context: str | None = None

    @model_validator(mode="after")
    def _replica_bounds(self) -> KubernetesConfig:
        if not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError("kubernetes: need min_replicas <= replicas <= max_replicas")
        return self


class RxVisionConfig(_Strict):
    profile: str = "demo"
    # the data-dependent layer on top of the profile (see load_config): auto picks "real" when
    # data.source is imagefolder or csv and "synthetic" otherwise; a loaded config holds the
    # resolved name.
    recipe: Literal["auto", "synthetic", "real"] = "auto"
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    gate: GateConfig = GateConfig()
    export: ExportConfig = ExportConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    tuning: TuningConfig = TuningConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# ------------------------------------------------------------------------ loading
def read_yaml(
    path: Path, kind: str = "config file", missing_hint: str = "check the path given to --config"
) -> dict[str, Any]:
    """A YAML file that must hold a mapping; a missing or malformed file is an RxVisionError
    that calls it ``kind`` (config file, stack file, ...)."""
    if not path.is_file():
        raise RxVisionError(f"{kind} not found: {path}", missing_hint)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RxVisionError(f"{kind} {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RxVisionError(
            f"{kind} {path} must hold a mapping of sections, not {type(data).__name__}"
        )
    return data


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``training.epochs=3`` -> (["training", "epochs"], 3); values are read as YAML scalars."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RxVisionError(
            f"bad override '{text}'", "write overrides as dotted key=value, e.g. training.epochs=3"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for depth, part in enumerate(keys[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RxVisionError(
                f"cannot set '{'.'.join(keys)}': '{'.'.join(keys[: depth + 1])}' is not a section"
            )
        node = child
    node[keys[-1]] = value


def _allowed_for(error: dict[str, Any]) -> str:
    ctx = error.get("ctx") or {}
    if error["type"] == "extra_forbidden":
        return ""
    if "expected" in ctx:
        return f"allowed: {ctx['expected']}"
    for bound, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if bound in ctx:
            return f"allowed: a value {word} {ctx[bound]}"
    return f"allowed: {error['msg'].lower()}"


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = RxVisionConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return sorted(model.model_fields)


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: the dotted key, the bad value and what is allowed."""
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            known = ", ".join(_known_keys(loc))
            lines.append(f"unknown key '{key}'" + (f" (known keys here: {known})" if known else ""))
        elif err["type"] == "value_error" and not loc:
            lines.append(err["msg"].removeprefix("Value error, "))
        else:
            value = err.get("input")
            text = f"bad value for '{key}': {value!r}"
            if err["type"] == "value_error":
                text += f" ({err['msg'].removeprefix('Value error, ')})"
            else:
                text += f" ({_allowed_for(err)})"
            lines.append(text)
    return "; ".join(lines)


def profile_path(profile: str) -> Path:
    path = PROFILES_DIR / f"{profile}.yaml"
    if not path.is_file():
        raise RxVisionError(f"unknown profile '{profile}'", f"choose one of: {', '.join(PROFILES)}")
    return path


def recipe_path(profile: str, recipe: str) -> Path | None:
    """The recipe layer of a profile (profiles/recipes/<profile>-<recipe>.yaml), if it has one."""
    path = PROFILES_DIR / "recipes" / f"{profile}-{recipe}.yaml"
    return path if path.is_file() else None


def resolve_recipe(recipe: str, source: str | None) -> str:
    """auto: a user's own photos (imagefolder, csv) get the real-data recipe."""
    if recipe != "auto":
        return recipe
    return "real" if source in ("imagefolder", "csv") else "synthetic"


def load_config(
    profile: str = "demo",
    config_file: Path | str | dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> RxVisionConfig:
    """Profile YAML, then its recipe for the data (if the profile has one), then the user's
    YAML (a file, or its already-read sections), then dotted overrides; validated once.

    The recipe is chosen after the user's layers are known (their data.source and recipe),
    but applied beneath them, so whatever a user sets explicitly wins over the recipe: the demo
    profile pointed at an ImageFolder trains the real-data recipe (demo-real.yaml) unless the
    user says otherwise, key by key or with recipe=synthetic."""
    base = read_yaml(profile_path(profile))
    base["profile"] = profile
    extra: dict[str, Any] = {}
    if config_file is not None:
        extra = config_file if isinstance(config_file, dict) else read_yaml(Path(config_file))

    def layered(data: dict[str, Any]) -> dict[str, Any]:
        data = _deep_merge(data, extra)
        for text in overrides:
            keys, value = parse_override(text)
            _apply_override(data, keys, value)
        return data

    data = layered(base)
    section = data.get("data") if isinstance(data.get("data"), dict) else {}
    source = section.get("source", DataConfig.model_fields["source"].default)
    recipe = resolve_recipe(str(data.get("recipe", "auto")), source)
    layer = recipe_path(profile, recipe)
    if layer is not None:
        data = layered(_deep_merge(base, read_yaml(layer, kind="recipe file")))
    data["recipe"] = recipe
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> RxVisionConfig:
    try:
        return RxVisionConfig.model_validate(data)
    except ValidationError as exc:
        raise RxVisionError(
            f"invalid configuration: {format_validation_error(exc)}",
            "fix the key in your YAML or --set override (see configs/ for examples)",
        ) from None
