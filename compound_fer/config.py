"""The protocol as data: YAML <-> validated config models.

pydantic does the validation (unknown keys, wrong types, out-of-range values), so every error names
the offending key; `load_config` turns those into a ConfigError that names the file too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from compound_fer import backbones, taxonomy
from compound_fer.errors import ConfigError
from compound_fer.overrides import deep_merge


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _as_list(v: Any) -> Any:
    """A list of names may be given as one string: ``kdpsmr`` or ``naive, kdpsmr`` (as on the command line)."""
    return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


class SyntheticData(_Section):
    """The embedded procedural dataset (no files)."""

    n_subjects: int = Field(40, ge=4)
    per_subject: int = Field(2, ge=1)
    seed: int = 0


class DataConfig(_Section):
    """Where faces come from and how they are prepared."""

    source: Literal["synthetic", "path"] = "synthetic"
    path: str | None = None
    test_path: str | None = None
    image_size: int = Field(64, ge=16, le=512)
    include_neutral: bool = False
    face_method: Literal["auto", "landmarks", "haar"] = "auto"
    face_margin: float = Field(0.15, ge=0.0, le=1.0)
    # faces without a landmarks file row: the offline detector (null: off, Haar places them without landmarks)
    landmark_detector: Literal["mediapipe"] | None = "mediapipe"
    no_face: Literal["skip", "haar"] = "skip"  # when the detector finds no face
    strict_classes: bool = False  # refuse (not skip) class folders / labels that match no category
    synthetic: SyntheticData = SyntheticData()

    @model_validator(mode="after")
    def _path_given(self) -> "DataConfig":
        if self.source == "path" and not self.path:
            raise ValueError("data.path is required when data.source is 'path'")
        return self


class EvaluationConfig(_Section):
    """strict: subject-disjoint train/val/test (or an external test folder); reference: k folds, val = test."""

    mode: Literal["strict", "reference"] = "strict"
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.6)
    folds: int = Field(10, ge=2)
    fold: int = Field(0, ge=0)
    # validation: score the validation subjects instead of the test ones (tuning; strict mode only)
    scored: Literal["test", "validation"] = "test"
    # a seeded share of the training subjects (strict only; val and test subjects unchanged): learning curves
    train_subjects_fraction: float = Field(1.0, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _fold_in_range(self) -> "EvaluationConfig":
        if self.fold >= self.folds:
            raise ValueError(f"evaluation.fold must be < evaluation.folds ({self.folds}), got {self.fold}")
        if self.train_subjects_fraction < 1 and self.mode != "strict":
            raise ValueError("evaluation.train_subjects_fraction < 1 needs evaluation.mode: strict")
        return self


class ModelConfig(_Section):
    backbone: Annotated[str, AfterValidator(backbones.registered)] = "small_cnn"  # compound_fer/backbones/
    pretrained: bool = False
    head: Literal["linear", "reference"] = "linear"
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    # landmarks: each face's landmark geometry fused with the CNN embedding (compound_fer.fusion)
    geometry: Literal["none", "landmarks"] = "none"
    geometry_weight: float = Field(1.0, gt=0.0)


class AugmentConfig(_Section):
    """The reference's augmentation: flip, ~3.6 degree rotation, 5% zoom, 5% translation."""

    flip: bool = True
    rotation_deg: float = Field(3.6, ge=0.0, le=45.0)
    zoom: float = Field(0.05, ge=0.0, le=0.5)
    translate: float = Field(0.05, ge=0.0, le=0.5)


class BasicPhase(_Section):
    """Experience 0: the basic model, trained once and shared by every method (as the reference does)."""

    epochs: int = Field(30, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    batch_size: int = Field(32, ge=1)
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(5, ge=1)
    # 0: best validation epoch (early stop after `patience`); K > 0: all epochs, the average of the last K (SWA)
    average_last: int = Field(0, ge=0)
    trainable: Literal["all", "tail_head", "head"] = "all"
    augment: bool = True
    # auxiliary heads on the basic faces (training/auxiliary.py): predict landmark geometry / action units
    aux_geometry: float = Field(0.0, ge=0.0)
    aux_aus: float = Field(0.0, ge=0.0)


class KDConfig(_Section):
    """Distillation from the basic model: the defaults of every KD method's options (training/entry.KDOptions)."""

    temperature: float = Field(3.0, gt=0.0, description="distillation temperature T (continual.kd.temperature, 3.0)")
    gamma0: float = Field(0.1, ge=0.0, le=1.0, description="KD weight at step 0 (continual.kd.gamma0, 0.1)")
    teacher_padding: Literal["zeros", "mask"] = Field(
        "zeros", description="zeros or mask for the teacher's missing classes (continual.kd.teacher_padding)")
    teacher_mode: Literal["basic", "previous"] = Field(
        "basic", description="basic (frozen basic model) or previous (continual.kd.teacher_mode)")
    # distil the embedding too (MSE), not only the logits
    feature_weight: float = Field(0.0, ge=0.0, description="weight of the embedding distillation MSE "
                                  "(continual.kd.feature_weight, 0)")


#: Which ranks a PSMR memory keeps of each class's ranking: ``top`` (the paper's: most confident first),
#: ``spread`` (ranks evenly from easy to hard), ``random`` (a seeded subset, as GDumb's memory).
MemorySelection = Literal["top", "spread", "random"]
BiasName = Literal["weight_aligning", "bic", "balanced_finetune", "logit_adjustment"]


class BiasCorrection(_Section):
    """Old/new class bias correction of each step (training/bias_correction.py), corrections in order.

    In YAML: a name (``bic``), a list of names, ``none``, or this mapping with the settings."""

    methods: tuple[BiasName, ...] = ()
    tau: float = Field(1.0, ge=0.0)  # logit_adjustment: strength of the log-prior shift
    margin: float | None = Field(None, ge=0.0)  # logit_adjustment: new classes this many nats below, any count
    holdout: float = Field(0.2, gt=0.0, lt=1.0)  # bic: share of each class's step images held out
    epochs: int = Field(30, ge=1)  # balanced_finetune: full-batch steps on the head's last Linear
    lr: float = Field(1e-3, gt=0.0)  # balanced_finetune: Adam learning rate
    applies_to: tuple[str, ...] = ()  # continual methods it corrects (empty: every method of the run)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if v is None or v == "none":
            return {"methods": ()}
        if isinstance(v, str):
            return {"methods": (v,)}
        if isinstance(v, (list, tuple)):
            return {"methods": tuple(m for m in v if m != "none")}
        return v

    @property
    def label(self) -> str:
        """What the results rows say: ``none`` or the corrections joined by ``+`` (LA's non-default settings)."""
        la = "".join(f" {k} {v}" for k, v in (("tau", self.tau), ("margin", self.margin)) if v not in (1.0, None))
        return "+".join(m + la * (m == "logit_adjustment") for m in self.methods) or "none"

    def for_method(self, method: str) -> "BiasCorrection":
        """This correction if it applies to ``method``, else none."""
        return self if not self.applies_to or method in self.applies_to else BiasCorrection()


class ContinualPhase(_Section):
    """Experiences 1..15: one compound class each (or `classes_per_step`), N seeded class orders."""

    methods: tuple[str, ...] = ("naive", "kdpsmr")
    orders: int = Field(3, ge=1)
    order_seed: int = 42
    classes_per_step: int = Field(1, ge=1, le=15)
    epochs: int = Field(10, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    optimizer: Literal["adam", "sgd"] = "adam"
    batch_size: int = Field(16, ge=1)
    memory_fraction: float = Field(0.3, ge=0.0, le=1.0)
    memory_mode: Literal["grow", "limit"] = "grow"
    cap_new_class: bool = True
    trainable: Literal["tail_head", "head"] = "tail_head"
    augment_views: int = Field(2, ge=0, le=16)
    # few-shot continual: every compound class trains from exactly this many images (None: all, capped at m)
    shots: int | None = Field(None, ge=1)
    # a compound's new output starts as the mean of its basic components' (training/component_init.py)
    component_init: bool = False
    component_rule: Literal["mean", "sum"] = "mean"  # the new unit as the mean or the sum of its components'
    # class prototypes in the head (training/prototypes.py): imprint new units from their faces' mean
    # embedding (the method ncm is the nearest-class-mean classifier)
    prototypes: Literal["none", "imprint", "ncm"] = "none"
    kd: KDConfig = KDConfig()
    # old/new class bias correction of every step, for every method (training/bias_correction.py)
    bias_correction: BiasCorrection = BiasCorrection()
    # per method: options its registered options model declares (checked when the run is planned, runner/plan.py)
    method_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ncm_is_a_method(self) -> "ContinualPhase":
        if self.prototypes == "ncm":
            raise ValueError("continual.prototypes: ncm would turn every method into the same nearest-class-mean "
                             "classifier; add the method ncm to continual.methods instead (or prototypes: imprint)")
        return self

    @field_validator("methods", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("methods")
    @classmethod
    def _lower(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(m.lower() for m in v)  # empty: no continual phase (the few-shot phase alone)


class ImprintConfig(_Section):
    """New unit = imprinted, TEEN-calibrated support prototype blended with the component prior (imprinting.py)."""
    mode: Literal["none", "frozen", "finetune"] = "none"  # none: component init alone; frozen: blend, no training
    alpha: float = Field(0.5, ge=0.0, le=1.0)  # TEEN: share of the prototype moved toward its components'
    kappa: float = Field(1.0, ge=0.0)  # the prior weighs like kappa shots: data weight k / (k + kappa)


class EpisodesConfig(_Section):
    """N-way K-shot episodes over the compound classes of the scored subjects (runner/episodes.py)."""

    enabled: bool = False
    ways: int = Field(5, ge=2)
    shots: tuple[int, ...] = (1, 5)
    queries: int = Field(15, ge=1)
    count: int = Field(600, ge=1)
    seed: int = 0
    learners: tuple[Literal["ncm", "component_finetune", "kept", "imprint"], ...] = ("ncm", "component_finetune",
                                                                                     "kept")
    steps: int = Field(50, ge=1)  # full-batch Adam steps of the fine-tuned learners
    lr: float = Field(1e-3, gt=0.0)
    tau: float = Field(1.0, ge=0.0)  # kept learner: logit adjustment


class FewShotPhase(_Section):
    """The reference's few-shot protocol: 7-way models from the basic model, n shots of one compound."""

    enabled: bool = True
    shots: tuple[int, ...] = (1, 3, 5)
    compounds: tuple[str, ...] | None = None
    repeats: int = Field(1, ge=1)
    epochs: int = Field(20, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    batch_size: int = Field(32, ge=1)
    # reference: shots only + KD (the paper); kept: KD+PSMR memory of basic faces + component-initialised output
    mode: Literal["reference", "kept", "both"] = "reference"
    component_init: bool = True  # kept mode: the new output starts from its basic components
    prototypes: Literal["none", "imprint", "ncm"] = "none"  # kept mode: as continual.prototypes
    bias_correction: BiasCorrection = BiasCorrection()  # kept mode: as continual.bias_correction
    memory_selection: MemorySelection = "top"  # kept mode: which basic faces the memory keeps (PSMR's selection)
    imprint: ImprintConfig = ImprintConfig()  # kept mode and the episodes' imprint learner: evidence vs prior
    episodes: EpisodesConfig = EpisodesConfig()  # N-way K-shot episodes (the field's protocol), beside the above
    save_models: bool = True  # the largest-shot episode of each compound (repeat 0) under models/, for Grad-CAM

    @field_validator("shots")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(s < 0 for s in v):
            raise ValueError(f"fewshot.shots must be >= 1 (or 0: the zero-shot row), got {list(v)}")
        return v

    @field_validator("compounds", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return _as_list(v)

    @field_validator("compounds")
    @classmethod
    def _known(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return v
        out = []
        for name in v:
            cat = taxonomy.by_name(name)
            if cat.kind != "compound":
                raise ValueError(f"fewshot.compounds: {name!r} is not a compound category")
            out.append(cat.name)
        return tuple(out)


class ProtocolConfig(_Section):
    """A whole benchmark protocol: data, evaluation, model, the three phases and the seeds."""

    name: str = "custom"
    data: DataConfig = DataConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = AugmentConfig()
    basic: BasicPhase = BasicPhase()
    continual: ContinualPhase = ContinualPhase()
    fewshot: FewShotPhase = FewShotPhase()
    seeds: tuple[int, ...] = Field((0,), min_length=1)
    device: str = "cpu"
    threads: int = Field(0, ge=0)
    cache_trunk: bool = True
    # head-only steps run on each cached view's pooled embedding: the same rows (features.pooled_features)
    cache_pooled: bool = True
    loggers: tuple[Literal["csv", "tensorboard"], ...] = ("csv", "tensorboard")

    @model_validator(mode="after")
    def _fewshot_ncm_needs_frozen_embedding(self) -> "ProtocolConfig":
        if self.fewshot.prototypes == "ncm" and self.continual.trainable != "head":
            raise ValueError("fewshot.prototypes: ncm keeps the basic classes' mean embeddings, so kept episodes must "
                             "leave the embedding frozen: set continual.trainable: head (or prototypes: imprint)")
        return self

    def with_overrides(self, **sections: dict[str, Any]) -> "ProtocolConfig":
        """A copy with some fields replaced, validated again (e.g. from CLI flags)."""
        return parse_config(deep_merge(self.model_dump(), sections), source="overrides")


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = (
            "unknown key (check the spelling; see docs/configuration.md)"
            if e["type"] == "extra_forbidden"
            else e["msg"]
        )
        lines.append(f"  {key}: {msg}")
    return f"invalid config {source}:\n" + "\n".join(lines)


def parse_config(data: dict[str, Any], *, source: str = "<dict>") -> ProtocolConfig:
    """Validate a plain dict (e.g. parsed YAML) into a ProtocolConfig."""
    try:
        return ProtocolConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None
    except taxonomy.UnknownCategoryError as err:
        raise ConfigError(f"invalid config {source}: {err}") from None


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping that gives one key twice (plain YAML keeps the last value without a word)."""


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                line = first.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: SafeLoader's own error names it
                continue
            if line != key_node.start_mark.line + 1:
                raise DuplicateKeyError(problem=f"key {key!r} is given twice in one mapping (lines {line} and "
                                                f"{key_node.start_mark.line + 1})", problem_mark=key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def config_text(path: Path) -> str:
    """The text of a config file (UTF-8, with or without a BOM); ConfigError naming the file and the line of
    the first byte that is not UTF-8 (Windows editors often save cp1252)."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        char = raw[err.start:err.start + 1].decode("cp1252", "replace")
        raise ConfigError(f"config file {path}: not UTF-8 text (byte 0x{raw[err.start]:02x}, {char!r} in Windows-1252, "
                          f"on line {line}); save the file as UTF-8") from None


def load_config(path: str | Path) -> ProtocolConfig:
    """Read and validate a YAML protocol file (a key given twice in one mapping is refused)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (the shipped ones are in benchmarks/configs/)")
    try:
        data = yaml.load(config_text(path), Loader=UniqueKeyLoader)
    except DuplicateKeyError as err:
        raise ConfigError(f"config file {path}: {err.problem}; YAML would keep only the last value: delete "
                          f"one of them") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if data is None:  # empty, or comments only: refused, never a full run of every default
        raise ConfigError(f"config file {path}: the file is empty; start from a packaged config "
                          f"({Path(__file__).parent / 'configs' / 'demo.yaml'})")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return parse_config(data, source=str(path))


def dump_config(config: ProtocolConfig) -> str:
    """YAML text of a config (round-trips through load_config)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
