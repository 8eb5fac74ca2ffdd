"""Fast read-only serialization for the API's hottest lists.

DRF builds every field object of a ModelSerializer again for each request (about 1 ms for a 30-field serializer on
the dev machine) and then calls two methods per field per row (about 0.4 ms per 30-field row). `FastReadMixin` makes
the same output from a plan computed once per serializer class: plain model fields are read with `getattr`, date-times
formatted the way DRF formats them, related ids read from `<name>_id`, dotted sources followed, method fields called;
anything else (a nested serializer, a file) goes through DRF's own field, so the output never changes
(tests/test_fast_paths.py compares the two on real rows). It is for output only; input validation is DRF's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from django.conf import settings
from django.db.models.manager import BaseManager
from django.utils import timezone
from rest_framework import fields as f
from rest_framework import relations, serializers
from rest_framework.settings import api_settings

Getter = Callable[[Any, Any], Any]  # (serializer, instance) -> value


_ZERO = timedelta(0)


def _datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    # DRF converts to the current time zone; ours is always UTC (TIME_ZONE, never activated otherwise), which
    # PostgreSQL already returns: skip the lookup of the active zone for those.
    if not (value.utcoffset() == _ZERO and settings.TIME_ZONE == "UTC"):
        value = timezone.localtime(value) if timezone.is_aware(value) else value
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _chain(attrs: list[str]) -> Callable[[Any], Any]:
    def read(obj: Any) -> Any:
        for attr in attrs:
            if obj is None:
                return None
            obj = obj[attr] if isinstance(obj, Mapping) else getattr(obj, attr)
        return obj

    return read


def _none_or(convert: Callable[[Any], Any], read: Callable[[Any], Any]) -> Getter:
    def get(_: Any, obj: Any) -> Any:
        value = read(obj)
        return None if value is None else convert(value)

    return get


def _plain(read: Callable[[Any], Any]) -> Getter:
    return lambda _, obj: read(obj)


def _plan_field(name: str, field: f.Field) -> Getter | None:
    """A fast getter with DRF's exact output for this field, or None to let DRF's field do it."""
    if isinstance(field, f.SerializerMethodField):
        method = field.method_name
        return lambda ser, obj: getattr(ser, method)(obj)
    attrs = list(field.source_attrs)
    if not attrs or field.source == "*":
        return None
    if isinstance(field, serializers.ListSerializer) and isinstance(field.child, FastReadMixin):
        child: Any = type(field.child)()
        return _none_or(
            lambda items: [
                child.to_representation(x) for x in (items.all() if isinstance(items, BaseManager) else items)
            ],
            _chain(attrs),
        )
    if isinstance(field, FastReadMixin):
        nested: Any = type(field)()
        return _none_or(nested.to_representation, _chain(attrs))
    if isinstance(field, relations.PrimaryKeyRelatedField) and len(attrs) == 1:
        attname = f"{attrs[0]}_id"
        return lambda _, obj: getattr(obj, attname)
    read = _chain(attrs)
    if isinstance(field, f.DateTimeField) and getattr(field, "format", api_settings.DATETIME_FORMAT) == f.ISO_8601:
        return lambda _, obj: _datetime(read(obj))
    if isinstance(field, f.DateField) and getattr(field, "format", api_settings.DATE_FORMAT) == f.ISO_8601:
        return _none_or(date.isoformat, read)
    if isinstance(field, f.BooleanField):
        return lambda _, obj: v if (v := read(obj)) is None or isinstance(v, bool) else field.to_representation(v)
    if isinstance(field, f.IntegerField):
        return _none_or(int, read)
    if isinstance(field, f.FloatField):
        return _none_or(float, read)
    if isinstance(field, f.UUIDField):
        return _none_or(str, read)
    if isinstance(field, (f.JSONField, f.ReadOnlyField)) or (
        isinstance(field, f.ChoiceField) and not field.allow_blank
    ):
        return _plain(read)
    if isinstance(field, f.CharField) or type(field) is f.ChoiceField:
        return _none_or(str, read)
    return None


class FastReadMixin:
    """Mix into a (Model)Serializer used for output: same representation, a fraction of the time."""

    _fast_plans: ClassVar[dict[type, list[tuple[str, Getter | None]]]] = {}

    @classmethod
    def _fast_plan(cls) -> list[tuple[str, Getter | None]]:
        plan = FastReadMixin._fast_plans.get(cls)
        if plan is None:
            prototype: Any = cls()
            plan = [(field.field_name, _plan_field(field.field_name, field)) for field in prototype._readable_fields]
            FastReadMixin._fast_plans[cls] = plan
        return plan

    def to_representation(self, instance: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        slow: dict[str, f.Field] | None = None
        for name, getter in self._fast_plan():
            if getter is not None:
                out[name] = getter(self, instance)
                continue
            if slow is None:
                slow = self.fields  # type: ignore[attr-defined]  # DRF's fields, built on first need only
            field = slow[name]
            attribute = field.get_attribute(instance)
            check = attribute.pk if isinstance(attribute, relations.PKOnlyObject) else attribute
            out[name] = None if check is None else field.to_representation(attribute)
        return out


def contains_nul(value: Any) -> bool:
    """True when a string in `value` (parsed JSON: dicts, lists, strings), a key included, holds a NUL character."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(contains_nul(v) for v in value)
    return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Field class -> (check, what the schema says it is), most specific first (a URLField is a CharField).
_JSON_TYPES: list[tuple[type[f.Field], Callable[[Any], bool], str]] = [
    (f.BooleanField, lambda v: isinstance(v, bool), "a boolean"),
    (f.IntegerField, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    (f.FloatField, _is_number, "a number"),
    (f.DecimalField, _is_number, "a number"),
    (f.CharField, lambda v: isinstance(v, str), "a string"),
    (f.ListField, lambda v: isinstance(v, list), "a list"),
    (f.DictField, lambda v: isinstance(v, Mapping), "an object"),
]


class StrictInputMixin:
    """For a serializer that reads a JSON body: a value of the wrong JSON type is refused (400), as the schema says,
    instead of DRF's coercion (the number 12 accepted as the text "12", the text "true" or the number 1 as a
    boolean, "5" as an integer); so is text with a NUL character anywhere in a field's value (PostgreSQL stores
    none, in text or jsonb: it would fail inside a query). Form input (a QueryDict, all text) is left to DRF, whose
    text fields refuse NUL characters too. Keys the serializer does not know are ignored, as DRF does."""

    def to_internal_value(self, data: Any) -> Any:
        from django.http import QueryDict

        if isinstance(data, Mapping) and not isinstance(data, QueryDict):
            errors: dict[str, list[str]] = {}
            for name, field in self.fields.items():  # type: ignore[attr-defined]
                value = data.get(name)
                if field.read_only or value is None:
                    continue  # absent, or null (DRF checks allow_null)
                if contains_nul(value):
                    errors[name] = ["Text may not contain a NUL character (\\u0000)."]
                    continue
                for kind, check, label in _JSON_TYPES:
                    if isinstance(field, kind):
                        if not check(value):
                            errors[name] = [f"Must be {label}."]
                        break
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)  # type: ignore[misc]
