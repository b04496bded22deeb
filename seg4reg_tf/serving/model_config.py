"""Which models and versions a server serves: `VersionPolicy`, `ServedModel` and TF Serving's model config
file (`--model_config_file`, a `ModelServerConfig` text proto), read with TF Serving's own message class.

    model_config_list {
      config {
        name: "seg4reg"  base_path: "/models/seg4reg"  model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 1 } }   # or specific { versions: 1 versions: 2 }, or all {}
        version_labels { key: "stable" value: 1 }
      }
    }

A relative `base_path` is relative to the working directory, as in TF Serving. Every problem is a
`ModelConfigError` (a ValueError) naming the file and the field.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Iterable, Mapping

from google.protobuf import text_format

from seg4reg_tf import fileio
from seg4reg_tf.serving.checks import is_int

POLICIES = ("latest", "specific", "all")
PLATFORMS = ("tensorflow",)


class ModelConfigError(ValueError):
    """A malformed model config file or model description; the message names the file and field."""


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's `model_version_policy`: which complete versions on disk to serve.

    `latest` serves the `num_versions` highest, `specific` exactly `versions` (those present), `all`
    every one. The default, as in TF Serving, is the newest version only.
    """

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in POLICIES:
            raise ModelConfigError(f"model_version_policy: expected one of {list(POLICIES)}, got {self.kind!r}")
        if self.kind == "latest" and (not is_int(self.num_versions) or self.num_versions < 1):
            raise ModelConfigError(f"model_version_policy.latest.num_versions: expected an int >= 1, "
                                   f"got {self.num_versions!r}")
        if self.kind == "specific":
            if not self.versions:
                raise ModelConfigError("model_version_policy.specific.versions: expected at least one version")
            bad = [v for v in self.versions if not is_int(v) or v < 0]
            if bad:
                raise ModelConfigError(f"model_version_policy.specific.versions: expected versions >= 0, got {bad}")
            object.__setattr__(self, "versions", tuple(sorted(set(self.versions))))

    @classmethod
    def latest(cls, num_versions: int = 1) -> "VersionPolicy":
        return cls("latest", num_versions=num_versions)

    @classmethod
    def specific(cls, versions: Iterable[int]) -> "VersionPolicy":
        return cls("specific", versions=tuple(versions))

    @classmethod
    def every(cls) -> "VersionPolicy":
        """TF Serving's `all {}`."""
        return cls("all")

    def aspired(self, available: Iterable[int]) -> set[int]:
        """The versions among `available` (complete ones on disk) that this policy serves."""
        found = sorted(set(available))
        if self.kind == "all":
            return set(found)
        if self.kind == "specific":
            return set(found) & set(self.versions)
        return set(found[-self.num_versions:])

    def describe(self) -> str:
        if self.kind == "all":
            return "all versions"
        if self.kind == "specific":
            return f"versions {list(self.versions)}"
        return "the newest version" if self.num_versions == 1 else f"the newest {self.num_versions} versions"


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """What a server cannot read from a model's SignatureDefs, per model (names of its signatures' inputs and
    outputs, in whichever signature has them):

    `nan_outputs`: outputs whose NaN is an answer (e.g. "no interval: not measurable"): sent as NaN over gRPC
    and as null in REST JSON. Any other non-finite output is the server's fault: INTERNAL, nothing sent.
    `example_image_keys`: {string input: tf.Example feature}: that input holds serialized tf.Examples whose
    feature is one encoded image. They are parsed in Python first, so a malformed one is INVALID_ARGUMENT
    naming the input and never reaches TensorFlow's parser (which logs the bytes), and the image's pixels
    count against the request limits.

    The default is neither; `seg4reg serve` supplies the seg4reg model's (`config.SEG4REG_MODEL_OPTIONS`).
    """

    nan_outputs: frozenset[str] = frozenset()
    example_image_keys: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        names = self.nan_outputs
        if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
            raise ModelConfigError(f"nan_outputs: expected a set of output names, got {names!r}")
        object.__setattr__(self, "nan_outputs", frozenset(names))
        keys = dict(self.example_image_keys)
        if not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in keys.items()):
            raise ModelConfigError(f"example_image_keys: expected input name -> tf.Example feature name, got {keys!r}")
        object.__setattr__(self, "example_image_keys", types.MappingProxyType(keys))


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """One served model: its `name`, `base_path` (numeric version directories), policy and version labels,
    and its `options` (None: the server's, `ServerConfig.model_options`)."""

    name: str
    base_path: str
    policy: VersionPolicy = dataclasses.field(default_factory=VersionPolicy)
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)
    options: ModelOptions | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name or ":" in self.name:
            raise ModelConfigError(f"name: expected a non-empty model name without '/' or ':', got {self.name!r}")
        if not isinstance(self.base_path, str) or not self.base_path:
            raise ModelConfigError(f"base_path: expected a directory path, got {self.base_path!r}")
        if not isinstance(self.policy, VersionPolicy):
            raise ModelConfigError(f"policy: expected a VersionPolicy, got {self.policy!r}")
        for label, version in dict(self.labels).items():
            if not isinstance(label, str) or not label or "/" in label or not is_int(version) or version < 0:
                raise ModelConfigError(f"version_labels: expected label -> version >= 0, got {label!r}: {version!r}")
        object.__setattr__(self, "labels", types.MappingProxyType(dict(self.labels)))
        if self.options is not None and not isinstance(self.options, ModelOptions):
            raise ModelConfigError(f"options: expected ModelOptions or None, got {self.options!r}")


def parse_model_config(text: str, source: str = "<model config>") -> list[ServedModel]:
    """The models of a ModelServerConfig text proto; ModelConfigError naming `source` and the field."""
    from tensorflow_serving.config import model_server_config_pb2

    message = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise ModelConfigError(parse_error_text(source, "ModelServerConfig", err)) from None
    kind = message.WhichOneof("config")
    if kind != "model_config_list":
        raise ModelConfigError(f"{source}: expected a model_config_list {{ config {{ ... }} }}, got "
                               f"{kind or 'an empty file'}" + (" (custom_model_config is not supported)"
                                                             if kind == "custom_model_config" else ""))
    configs = message.model_config_list.config
    if not configs:
        raise ModelConfigError(f"{source}: model_config_list has no config entries")
    models, seen = [], {}
    for i, entry in enumerate(configs):
        where = f"{source}: model_config_list.config[{i}]"
        if entry.name in seen:
            raise ModelConfigError(f"{where}.name: model {entry.name!r} is already configured by "
                                   f"config[{seen[entry.name]}]")
        seen[entry.name] = i
        platform = entry.model_platform or "tensorflow"
        if platform not in PLATFORMS:
            raise ModelConfigError(f"{where}.model_platform: {platform!r} is not supported (only 'tensorflow')")
        try:
            models.append(ServedModel(entry.name, entry.base_path, _policy(entry.model_version_policy),
                                      dict(entry.version_labels)))
        except ModelConfigError as err:
            raise ModelConfigError(f"{where} ({entry.name or 'no name'}): {err}") from None
    return models


def read_model_config_file(path: str) -> list[ServedModel]:
    """`parse_model_config` of a file; ModelConfigError naming it when unreadable or malformed."""
    try:
        text = fileio.read_text(path)
    except (OSError, UnicodeDecodeError) as err:
        raise ModelConfigError(f"--model_config_file {path}: cannot read: {err}") from None
    return parse_model_config(text, path)


def parse_error_text(source: str, message_name: str, err: text_format.ParseError) -> str:
    """'FILE: line L, column C: not a MESSAGE text proto: what' from protobuf's text-format error."""
    where = f"line {err.GetLine()}, column {err.GetColumn()}: " if err.GetLine() else ""
    what = str(err).split(" : ", 1)[-1] if err.GetLine() else str(err)
    return f"{source}: {where}not a {message_name} text proto: {what}"


def _policy(proto) -> VersionPolicy:
    choice = proto.WhichOneof("policy_choice")
    if choice is None:
        return VersionPolicy()
    if choice == "latest":
        return VersionPolicy.latest(proto.latest.num_versions or 1)  # TF Serving: unset means 1
    if choice == "specific":
        return VersionPolicy.specific(proto.specific.versions)
    return VersionPolicy.every()
