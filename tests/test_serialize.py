"""identity.serialize: the one serializer of typed results, and that no result writes its JSON by hand."""

from __future__ import annotations

import ast
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from identity.serialize import json_field, to_json
from identity.services.curation.erasure import Erasure, FaceErased, FaceNamed, PersonErased, Removed
from identity.services.review.matches import REVIEW_JSON, ReviewState
from identity.store.sql.persons import PersonRecord

ROOT = Path(__file__).resolve().parents[1]


class Colour(StrEnum):
    red = "red"


@dataclass(frozen=True)
class Inner:
    a: int
    b: str | None = field(default=None, metadata=json_field(omit_if_none=True))


@dataclass(frozen=True)
class Outer:
    source: str = field(metadata=json_field(name="from"))
    colour: Colour
    inner: Inner
    flat: Inner | None = field(metadata=json_field(flatten=True))
    hidden: int = field(default=0, metadata=json_field(skip=True))
    seconds: float = field(default=1.23456, metadata=json_field(encode=lambda s: round(s, 2)))
    flags: list[str] = field(default_factory=list, metadata=json_field(omit_if_falsy=True))


def test_renames_nesting_enums_and_omitted_keys_in_field_order() -> None:
    shown = to_json(Outer("x", Colour.red, Inner(1), Inner(2, "b")))
    assert list(shown) == ["from", "colour", "inner", "a", "b", "seconds"]  # flat's keys in its place
    assert shown == {"from": "x", "colour": "red", "inner": {"a": 1}, "a": 2, "b": "b", "seconds": 1.23}
    assert type(shown["colour"]) is str  # the enum's value, not the member


def test_a_flattened_none_writes_nothing_and_falsy_keys_appear_when_set() -> None:
    shown = to_json(Outer("x", Colour.red, Inner(1, "y"), None, hidden=5, flags=["f"]))
    assert shown == {"from": "x", "colour": "red", "inner": {"a": 1, "b": "y"}, "seconds": 1.23, "flags": ["f"]}


def test_plain_values_uuids_times_paths_tuples_and_dict_keys() -> None:
    point = uuid.UUID(int=7)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    shown = to_json({Colour.red: (point, when, Path("/a/b")), point: {1, 2}})
    assert shown == {"red": [str(point), "2026-01-02T03:04:05+00:00", "/a/b"], str(point): [1, 2]}
    assert json.loads(json.dumps(shown)) == shown


def test_a_class_may_serialize_as_another_object() -> None:
    @dataclass
    class Report:
        ids: list[str]

        def __json__(self) -> Inner:
            return Inner(len(self.ids))

    assert to_json([Report(["a", "b"])]) == [{"a": 2}]


def test_a_person_inside_another_answer_has_no_face_count() -> None:
    person = PersonRecord("u", "ext", None, {"k": "v"}, None)
    assert to_json(person) == {
        "id": "u",
        "external_id": "ext",
        "display_name": None,
        "attributes": {"k": "v"},
        "created_at": None,
    }
    assert to_json(PersonRecord("u", "ext", None, {}, None, faces=0))["faces"] == 0


def test_the_two_shapes_of_an_erasure() -> None:
    done = Erasure(subject=PersonErased("ext", "u", 3), removed=Removed({"faces": 3}, {"faces_m": {"face_rows": 3}}))
    assert to_json(done) == {
        "deleted": "ext",
        "person_id": "u",
        "faces_erased": 3,
        "removed": {"sql": {"faces": 3}, "vectors": {"faces_m": {"face_rows": 3}}},
    }
    resumed = Erasure(subject=FaceErased("f", None), removed=Removed(uploaded_files=2), completed_pending=True)
    assert to_json(resumed) == {
        "face_id": "f",
        "person": None,
        "removed": {"uploaded_files": 2},
        "completed_pending": True,
    }
    already = Erasure(already_deleted=True, subject=FaceNamed("f"), deleted_at="t", by="me")
    assert list(to_json(already)) == ["already_deleted", "face_id", "deleted_at", "by"]
    assert to_json(Erasure(already_deleted=True, deleted_at="t", by="me")) == {
        "already_deleted": True,
        "deleted_at": "t",
        "by": "me",
    }


def test_a_hit_review_is_four_keys_never_null() -> None:
    @dataclass(frozen=True)
    class Hit:
        rank: int
        review: ReviewState | None = field(default=None, metadata=REVIEW_JSON)

    assert to_json(Hit(1)) == {
        "rank": 1,
        "review": "unreviewed",
        "reviewed_by": None,
        "reviewed_at": None,
        "review_note": None,
    }
    assert to_json(Hit(1, ReviewState("confirmed", "ann", "t", "ok")))["reviewed_by"] == "ann"


def _hand_written(tree: ast.AST) -> list[str]:
    """Classes whose as_dict builds its dict by hand (a dict literal, comprehension or dict(...) call)."""
    found = []
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for method in cls.body:
            if isinstance(method, ast.FunctionDef) and method.name == "as_dict":
                if any(
                    isinstance(n, (ast.Dict, ast.DictComp))
                    or (isinstance(n, ast.Call) and getattr(n.func, "id", None) == "dict")
                    for n in ast.walk(method)
                ):
                    found.append(cls.name)
    return found


def test_the_ast_check_finds_a_hand_written_as_dict() -> None:
    tree = ast.parse(
        "class A:\n    def as_dict(self):\n        return {'a': self.a}\n"
        "class B:\n    def as_dict(self):\n        return to_json(self)\n"
    )
    assert _hand_written(tree) == ["A"]


def test_no_result_writes_its_json_by_hand() -> None:
    # IdentityError's JSON carries free-form details (**details), not the fields of a result.
    allowed = {("identity/errors.py", "IdentityError")}
    found = {
        (str(path.relative_to(ROOT)), name)
        for path in (ROOT / "identity").rglob("*.py")
        for name in _hand_written(ast.parse(path.read_text(encoding="utf-8")))
    }
    assert found <= allowed, sorted(found - allowed)


def test_the_api_model_of_a_result_has_its_json_keys_in_order() -> None:
    from identity.api.derive import derived

    model = derived("OuterModel", Outer, inner=derived("InnerModel", Inner), flags=None)
    assert [f.alias or name for name, f in model.model_fields.items()] == [
        "from",
        "colour",
        "inner",
        "a",
        "b",
        "seconds",
    ]
    assert model.model_fields["b"].is_required() is False  # omitted when None: the key may be absent
    shown = to_json(Outer("x", Colour.red, Inner(1), Inner(2)))
    assert model.model_validate(shown).model_dump(mode="json", by_alias=True, exclude_unset=True) == shown
