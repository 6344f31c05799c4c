"""The base of every settings model: the hub's config sections and the profiles' options.

Types are strict, so ``mtom = "yes"`` or ``lookup_ttl = "10"`` is an error naming the key instead
of a guess (pydantic's lax mode would read "yes" as true and "10" as 10). Strict mode would also
refuse what TOML cannot write any other way, a list where a tuple is declared and text where a
path is declared; those two shapes, and only those, are converted here.

Environment overrides are text by nature: the hub's config marks them as ``EnvText``
(``hub/config.py``) and every model converts them by the type of the field they land in, at any
depth. Free-form tables (a profile's ``options``) keep them as ``EnvText`` until the profile's own
options model, also a ``StrictSettings``, converts them by its field types.
"""

from __future__ import annotations

import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic.fields import FieldInfo


class EnvText(str):
    """The value of an environment override: text, to be converted to the key's type."""

    def literal(self) -> Any:
        """The text read as a TOML value (``true``, ``5``, ``[5, 30]``, ``"quoted"``), else as text."""
        try:
            return tomllib.loads(f"v = {self}")["v"]
        except tomllib.TOMLDecodeError:
            return str(self)


def env_value(field: FieldInfo, text: EnvText) -> Any:
    """``text`` converted to the field's type by pydantic's lax rules (``"64"`` -> 64, ``"yes"`` ->
    True); failing that, its TOML reading, which strict validation then accepts or reports. A
    free-form field (``Any``) keeps the ``EnvText``: whoever gives it a type converts it."""
    if field.annotation is Any:
        return text
    declared: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    try:
        return TypeAdapter(declared).validate_python(str(text), strict=False)
    except ValidationError:
        return text.literal()


def toml_shapes(annotation: Any, value: Any) -> Any:
    """``value`` with a TOML list made the declared tuple and TOML text the declared ``Path``
    (also inside tuples and optionals); every other value is returned unchanged."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return toml_shapes(get_args(annotation)[0], value)
    if origin is Union or origin is types.UnionType:
        for member in get_args(annotation):
            converted = toml_shapes(member, value)
            if converted is not value:
                return converted
        return value
    if origin is tuple and isinstance(value, list):
        args = get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(toml_shapes(args[0], item) for item in value)
        if len(args) == len(value):
            return tuple(toml_shapes(arg, item) for arg, item in zip(args, value, strict=True))
        return tuple(value)  # the wrong length: strict validation says so
    if annotation is Path and isinstance(value, str):
        return Path(value)
    return value


S = TypeVar("S", bound=BaseModel)


class StrictSettings(BaseModel):
    """Frozen, unknown keys refused, strict types (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*", mode="wrap")
    @classmethod
    def _toml_shapes(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        field = cls.model_fields[info.field_name] if info.field_name else None
        if field is None:
            return handler(value)
        return handler(toml_shapes(field.annotation, cls.settings_value(field, value)))

    @classmethod
    def settings_value(cls, field: FieldInfo, value: Any) -> Any:
        """Hook: turn a value from another source than the file into a typed one before strict
        validation. The base converts ``EnvText`` by the field's type and takes the rest as it is;
        nested models and free-form tables are left to convert their own values."""
        if isinstance(value, EnvText):
            return env_value(field, value)
        return value


def settings_problems(exc: ValidationError, key: str) -> str:
    """The errors of a validation as one line, each naming its key below ``key`` (``a.b[0].c: msg``)."""
    problems = []
    for error in exc.errors():
        where = key
        for part in error["loc"]:
            where += f"[{part}]" if isinstance(part, int) else f".{part}"
        problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(problems)


def parse_settings(model: type[S], values: Mapping[str, Any], key: str) -> S:
    """``values`` validated by ``model``; a ``ConfigError`` naming every bad key below ``key``
    (e.g. ``adapters.advis.endpoint``) in one line."""
    from hub.errors import ConfigError  # imports nothing of the project: no cycle

    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {settings_problems(exc, key)}") from None
