"""Every setting says what it does: each field of a settings class in services/ carries `Field(description=...)`.

Settings classes are the subclasses of pydantic-settings' `BaseSettings` found by importing every module under
services/ (entry points aside), plus the pydantic models of the gateway's YAML site file.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from pydantic import BaseModel
from pydantic_settings import BaseSettings

import services
from services.gateway import config as gateway_config

pytestmark = pytest.mark.unit


def import_services() -> None:
    for module in pkgutil.walk_packages(services.__path__, "services."):
        if module.name.rsplit(".", 1)[-1] != "__main__":
            importlib.import_module(module.name)


def subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub} | subclasses(sub)
    return found


def settings_classes() -> list[type[BaseModel]]:
    import_services()
    classes: set[type[BaseModel]] = {
        cls for cls in subclasses(BaseSettings) if cls.__module__.split(".", 1)[0] == "services"
    }
    classes |= {
        cls for cls in vars(gateway_config).values()
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls.__module__ == gateway_config.__name__
    }
    return sorted(classes, key=lambda cls: (cls.__module__, cls.__qualname__))


def declared_by(cls: type[BaseModel], field: str) -> str:
    """The class that declares `field` (a settings class inherits most of its fields from the shared ones)."""
    for base in cls.__mro__:
        if field in vars(base).get("__annotations__", {}):
            return f"{base.__module__}.{base.__qualname__}.{field}"
    return f"{cls.__module__}.{cls.__qualname__}.{field}"


def test_settings_classes_are_found() -> None:
    names = {cls.__qualname__ for cls in settings_classes()}
    assert {"ServiceSettings", "KeySettings", "VisionSettings", "SimulatorSettings", "SiteConfig"} <= names


def test_every_settings_field_has_a_description() -> None:
    missing = sorted({
        declared_by(cls, name)
        for cls in settings_classes()
        for name, field in cls.model_fields.items()
        if not (field.description or "").strip()
    })
    assert not missing, f"{len(missing)} settings fields lack Field(description=...):\n" + "\n".join(missing)
