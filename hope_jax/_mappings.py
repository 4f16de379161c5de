"""Building frozen config dataclasses from dicts or ml_collections ConfigDicts."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
  from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def dataclass_from_mapping(cls: type[T], mapping: Any) -> T:
  """Builds ``cls`` from a dict or ConfigDict; unknown keys raise ValueError naming them."""
  mapping = dict(mapping.to_dict() if hasattr(mapping, "to_dict") else mapping)
  unknown = sorted(set(mapping) - {f.name for f in dataclasses.fields(cls)})
  if unknown:
    raise ValueError(f"unknown {cls.__name__} field(s) {unknown}")
  return cls(**mapping)
