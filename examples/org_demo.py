"""Build a small organisation-like demo store from lfw-dev, ready for `identity serve`.

    .venv/bin/python examples/org_demo.py --data-dir DIR [--people 40] [--strangers 10] [--groups 12]
        [--lfw ../shared/datasets/lfw-dev] [--seed 25] [--workers 0] [--json]

DIR (new or empty) becomes the demo's data directory:

- `config.toml` turns review.keep_unknown_faces on, so searches feed clusters (and `identity serve` keeps it);
- `badges/`: one badge photo per enrolled person (E-1001, ...) and `manifest.csv`, enrolled as
  `identity enroll --manifest` does;
- `group/`: group photos made of OTHER photos of enrolled people and of strangers (people never enrolled;
  some appear in several photos so they cluster), pasted on a plain canvas; `phone_*.jpg` are portrait
  photos whose pixels are stored rotated with EXIF orientation 6, as phones save them;
- every group photo is searched as the actor "operator" (matches wait for review, unknown faces are kept),
  then the kept unknown faces are clustered (`identity cluster --from-searches`);
- `samples/`: photos for trying the rest by hand: `newcomer/` (a person to enroll from the browser) and
  `verify_a.jpg`/`verify_b.jpg` (two photos of one enrolled person, for /v1/verify);
- `keys.json` (0600): one API key per role; `truth.json`: who is where in every group photo (boxes in upright
  pixels); `searches.json`: what each search decided per face (search id, face index, box, person).

Everything is chosen from --seed, so a run with the same arguments builds the same demo. It goes through the
product's services only (enrollment, search, clustering, keys), the ones the CLI and HTTP API call.
IDENTITY_* variables are ignored: the demo is always the embedded store under DIR.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageOps

from identity.app.core import App
from identity.config import Settings
from identity.services.access.keys import Role, create_key
from identity.services.clustering.clusters import cluster_searches
from identity.services.enrollment.inputs import from_manifest
from identity.services.enrollment.run import enroll
from identity.services.search.identify import SearchFailure, SearchOptions, SearchResult, search_one

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "datasets" / "lfw-dev"
CANVAS = (1600, 900)  # a landscape group photo
PHONE = (900, 1200)  # portrait, as a phone held upright shows it
BACKGROUNDS = [(214, 218, 222), (196, 206, 190), (222, 210, 196), (188, 198, 214)]
CROP = (40, 30, 210, 220)  # LFW's 250x250 photos have the face centred; the border often shows other people
CROP_RATIO = (CROP[3] - CROP[1]) / (CROP[2] - CROP[0])  # height / width
FACES_PER_PHOTO = (3, 6)
EXIF_ORIENTATION = 0x0112
ROTATED_90_CW = 6  # EXIF orientation 6: a viewer turns the stored pixels 90 degrees clockwise
DEPARTMENTS = ["engineering", "operations", "finance", "sales", "legal"]
ACTOR = "operator"
KEY_NAMES = {Role.search: "operator", Role.enroll: "enroller", Role.audit: "reviewer", Role.admin: "admin"}


@dataclass
class Placed:
    """One face pasted into a group photo: who, from which lfw-dev photo, and where (upright pixels)."""

    lfw_name: str
    source: str
    external_id: str | None  # None: a stranger
    box: list[int]  # x0, y0, x1, y1 of the pasted tile


@dataclass
class GroupPhoto:
    path: str
    phone: bool
    faces: list[Placed] = field(default_factory=list)


@dataclass
class Plan:
    enrolled: dict[str, str]  # external id -> lfw name
    badges: dict[str, Path]  # external id -> lfw photo
    strangers: list[str]
    recurring: list[str]  # strangers in several group photos
    groups: list[GroupPhoto]
    newcomer: str
    newcomer_photos: list[Path]
    verify: tuple[Path, Path]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="New or empty folder: the demo's data dir.")
    parser.add_argument("--people", type=int, default=40, help="Enrolled people (one badge photo each).")
    parser.add_argument("--strangers", type=int, default=10, help="People in group photos who are not enrolled.")
    parser.add_argument("--groups", type=int, default=12, help="Group photos (about one in six phone-style).")
    parser.add_argument("--lfw", type=Path, default=LFW, help="lfw-dev folder (PERSON/PERSON_NNNN.jpg).")
    parser.add_argument("--seed", type=int, default=25, help="Chooses the people and the layouts.")
    parser.add_argument("--workers", type=int, default=0, help="Enrollment processes (0: one per core).")
    parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")
    args = parser.parse_args()
    try:
        summary = build(args.data_dir, args.lfw, args.people, args.strangers, args.groups, args.seed, args.workers)
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        show(summary)
    return 0


class DemoError(Exception):
    """A demo that cannot be built as asked (one line: what and why)."""


def build(data_dir: Path, lfw: Path, people: int, strangers: int, groups: int, seed: int, workers: int) -> dict:
    started = time.monotonic()
    data_dir = data_dir.expanduser().resolve()
    if data_dir.exists() and any(data_dir.iterdir()):
        raise DemoError(f"{data_dir}: not empty; give a new or empty folder (the demo builds a fresh store)")
    if not lfw.is_dir():
        raise DemoError(f"{lfw}: no such folder; give lfw-dev with --lfw")
    if people < 1 or strangers < 0 or groups < 1:
        raise DemoError("--people and --groups must be at least 1, --strangers at least 0")
    plan = make_plan(lfw, people, strangers, groups, random.Random(seed))
    os.umask(0o077)  # the store holds faces and names: private, as the CLI and the server make it
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "config.toml").write_text(
        "# Written by examples/org_demo.py: searches keep their unknown faces so they can be clustered.\n"
        "[review]\nkeep_unknown_faces = true\n"
    )
    manifest = write_badges(data_dir / "badges", plan)
    compose_groups(data_dir / "group", plan, random.Random(seed + 1))
    write_samples(data_dir / "samples", plan)

    settings = Settings.load(env={"IDENTITY_DATA_DIR": str(data_dir)}).replace(workers=workers)
    with App.open(settings) as app:
        enrolled = enroll(app, from_manifest(manifest), workers)
        searched = [search_one(app, g.path, SearchOptions(actor=ACTOR)) for g in plan.groups]
        clusters = cluster_searches(app)
        keys = {role.value: create_key(app, KEY_NAMES[role], role.value, ACTOR) for role in Role}

    keys_file = data_dir / "keys.json"
    write_private(keys_file, {role: {"name": k.record.name, "key": k.key} for role, k in keys.items()})
    truth = {
        "people": plan.enrolled,
        "strangers": plan.strangers,
        "recurring_strangers": plan.recurring,
        "newcomer": plan.newcomer,
        "groups": {Path(g.path).name: [asdict(f) for f in g.faces] for g in plan.groups},
    }
    write_private(data_dir / "truth.json", truth)
    write_private(data_dir / "searches.json", [search_record(r) for r in searched])
    results = [r for r in searched if not isinstance(r, SearchFailure)]
    decisions = [str(face.decision) for r in results for face in r.faces]
    scored = score(plan, results)
    return {
        "data_dir": str(data_dir),
        "people": len(plan.enrolled),
        "enrolled": enrolled.summary.counts.get("enrolled", 0),
        "enroll_outcomes": dict(sorted(enrolled.summary.counts.items())),
        "group_photos": len(plan.groups),
        "phone_photos": sum(g.phone for g in plan.groups),
        "faces_placed": sum(len(g.faces) for g in plan.groups),
        "faces_searched": len(decisions),
        "matches": decisions.count("match"),
        "matches_right": scored["right"],  # against truth.json: the face pasted there is that person
        "matches_wrong": scored["wrong"],  # another enrolled person, a stranger, or no pasted face
        "enrolled_faces_placed": sum(f.external_id is not None for g in plan.groups for f in g.faces),
        "unknown": decisions.count("unknown"),
        "not_searched": decisions.count("not_searched"),
        "search_errors": [f.error for f in searched if isinstance(f, SearchFailure)],
        "clusters": len(clusters.clusters),
        "clustered_faces": sum(c.size for c in clusters.clusters),
        "keys_file": str(keys_file),
        "keys": {role: k.record.name for role, k in keys.items()},
        "truth_file": str(data_dir / "truth.json"),
        "samples": str(data_dir / "samples"),
        "serve": f"IDENTITY_DATA_DIR={data_dir} .venv/bin/identity serve",
        "seconds": round(time.monotonic() - started, 1),
    }


def make_plan(lfw: Path, people: int, strangers: int, groups: int, rng: random.Random) -> Plan:
    """Who is enrolled, who is a stranger, and who stands in which group photo (all from `rng`)."""
    photos = {d.name: sorted(d.glob("*.jpg")) for d in sorted(lfw.iterdir()) if d.is_dir()}
    eligible = [name for name, files in photos.items() if len(files) >= 3]  # a badge, a group photo, a spare
    wanted = people + strangers + 1  # + the newcomer
    if len(eligible) < wanted:
        raise DemoError(f"{lfw}: {len(eligible)} people have 3 or more photos; {wanted} are needed")
    chosen = rng.sample(eligible, wanted)
    members, others, newcomer = chosen[:people], chosen[people:-1], chosen[-1]
    enrolled = {f"E-{1001 + i}": name for i, name in enumerate(members)}
    badges = {eid: photos[name][0] for eid, name in enrolled.items()}
    recurring = others[: (len(others) + 1) // 2]

    # Each appearance: (lfw name, photo, external id or None). Enrolled people appear with a photo that is not
    # their badge; a recurring stranger in 2 or 3 photos, each time a different photo of them.
    appearances: list[tuple[str, Path, str | None]] = [
        (name, photos[name][1 + rng.randrange(len(photos[name]) - 1)], eid) for eid, name in enrolled.items()
    ]
    for name in others:
        times = min(rng.choice((2, 3)), len(photos[name])) if name in recurring else 1
        appearances += [(name, path, None) for path in rng.sample(photos[name], times)]
    rng.shuffle(appearances)

    phones = max(1, groups // 6) if groups >= 3 else 0
    plan_groups = [GroupPhoto("", phone=i >= groups - phones) for i in range(groups)]
    low, high = FACES_PER_PHOTO
    for name, path, eid in appearances:
        # the emptiest photo this person is not in yet, so a photo never shows one person twice
        open_ = [g for g in plan_groups if len(g.faces) < high and all(f.lfw_name != name for f in g.faces)]
        if not open_:
            continue
        target = min(open_, key=lambda g: (len(g.faces), rng.random()))
        target.faces.append(Placed(name, str(path), eid, []))
    spare = [(eid, name) for eid, name in enrolled.items()]
    for g in plan_groups:  # too few faces: more enrolled people, with their third photo
        while len(g.faces) < low and spare:
            eid, name = spare.pop(rng.randrange(len(spare)))
            if all(f.lfw_name != name for f in g.faces):
                g.faces.append(Placed(name, str(photos[name][2]), eid, []))
    verify_person = enrolled[min(enrolled)]
    return Plan(
        enrolled,
        badges,
        others,
        recurring,
        plan_groups,
        newcomer,
        photos[newcomer][:3],
        (photos[verify_person][1], photos[verify_person][2]),
    )


def write_badges(folder: Path, plan: Plan) -> Path:
    """Copy each badge photo as badges/E-NNNN.jpg and describe them in a manifest (name and department)."""
    folder.mkdir(parents=True)
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["path", "external_id", "display_name", "department"])
        for i, (eid, name) in enumerate(plan.enrolled.items()):
            shutil.copyfile(plan.badges[eid], folder / f"{eid}.jpg")
            writer.writerow([f"{eid}.jpg", eid, name.replace("_", " "), DEPARTMENTS[i % len(DEPARTMENTS)]])
    return manifest


def compose_groups(folder: Path, plan: Plan, rng: random.Random) -> None:
    """Paste each group photo's faces on a plain canvas, in a grid with some scaling and jitter."""
    folder.mkdir(parents=True)
    landscape = phone = 0
    for g in plan.groups:
        size = PHONE if g.phone else CANVAS
        canvas = Image.new("RGB", size, rng.choice(BACKGROUNDS))
        count = len(g.faces)
        cols = 2 if g.phone else count if count <= 3 else -(-count // 2)
        rows = -(-count // cols)
        cell_w, cell_h = size[0] // cols, size[1] // rows
        for i, face in enumerate(g.faces):
            height = int(min(cell_w * CROP_RATIO, cell_h) * rng.uniform(0.5, 0.85))
            width = int(height / CROP_RATIO)
            tile = Image.open(face.source).convert("RGB").crop(CROP).resize((width, height), Image.Resampling.LANCZOS)
            col, row = i % cols, i // cols
            x = col * cell_w + rng.randint(0, cell_w - width)
            y = row * cell_h + rng.randint(0, cell_h - height)
            canvas.paste(tile, (x, y), portrait_mask(width, height))
            face.box = [x, y, x + width, y + height]
        if g.phone:
            phone += 1
            g.path = str(folder / f"phone_{phone:02d}.jpg")
            # Stored turned 90 degrees counter-clockwise, with the tag that tells a viewer to turn it back.
            exif = Image.Exif()
            exif[EXIF_ORIENTATION] = ROTATED_90_CW
            canvas.transpose(Image.Transpose.ROTATE_90).save(g.path, quality=90, exif=exif)
            assert ImageOps.exif_transpose(Image.open(g.path)).size == size  # what every viewer will show
        else:
            landscape += 1
            g.path = str(folder / f"group_{landscape:02d}.jpg")
            canvas.save(g.path, quality=90)


def portrait_mask(width: int, height: int) -> Image.Image:
    """An oval with a soft edge: the face and hair are pasted, the people beside them in LFW's photos are not."""
    mask = Image.new("L", (width, height), 0)
    inset = max(2, width // 20)
    ImageDraw.Draw(mask).ellipse((inset, inset, width - inset, height - inset), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(inset))


def write_samples(folder: Path, plan: Plan) -> None:
    """Photos for the parts a person tries by hand: enrolling a newcomer, verifying two photos."""
    newcomer = folder / "newcomer"
    newcomer.mkdir(parents=True)
    for path in plan.newcomer_photos:
        shutil.copyfile(path, newcomer / path.name)
    shutil.copyfile(plan.verify[0], folder / "verify_a.jpg")
    shutil.copyfile(plan.verify[1], folder / "verify_b.jpg")


def score(plan: Plan, results: list[SearchResult]) -> dict[str, int]:
    """The matches against the ground truth: a match is right when the tile holding its face's centre is that
    person's."""
    placed = {g.path: g.faces for g in plan.groups}
    counts = {"right": 0, "wrong": 0}
    for result in results:
        for face in result.faces:
            if face.decision != "match" or face.best is None:
                continue
            x, y = (face.bbox[0] + face.bbox[2]) / 2, (face.bbox[1] + face.bbox[3]) / 2
            tile = next(
                (p for p in placed[result.path] if p.box[0] <= x <= p.box[2] and p.box[1] <= y <= p.box[3]), None
            )
            counts["right" if tile and tile.external_id == face.best.person.external_id else "wrong"] += 1
    return counts


def search_record(outcome: SearchResult | SearchFailure) -> dict[str, Any]:
    """What the operator saw for one group photo: per face its box, decision and the person it named."""
    if isinstance(outcome, SearchFailure):
        return {"image": Path(outcome.image).name, "error": outcome.error}
    return {
        "image": Path(outcome.path).name,
        "search_id": outcome.search_id,
        "faces": [
            {
                "face_index": face.face_index,
                "bbox": face.bbox,
                "decision": face.decision,
                "person": face.best.person.external_id if face.best else None,
                "score": face.best.score if face.best else None,
            }
            for face in outcome.faces
        ],
    }


def write_private(path: Path, data: Any) -> None:
    """JSON readable by its owner only (keys.json holds secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.chmod(path, 0o600)  # in case it already existed with a wider mode


def show(summary: dict) -> None:
    print(f"org demo in {summary['data_dir']} ({summary['seconds']} s)")
    print(f"  people enrolled:  {summary['enrolled']} of {summary['people']} badge photos {summary['enroll_outcomes']}")
    print(f"  group photos:     {summary['group_photos']} ({summary['phone_photos']} phone-style, EXIF-rotated)")
    print(
        f"  faces searched:   {summary['faces_searched']} of {summary['faces_placed']} placed: "
        f"{summary['matches']} matches (pending review), {summary['unknown']} unknown, "
        f"{summary['not_searched']} not searched"
    )
    print(
        f"  against truth:    {summary['matches_right']} right and {summary['matches_wrong']} wrong matches; "
        f"{summary['enrolled_faces_placed']} faces of enrolled people placed"
    )
    for error in summary["search_errors"]:
        print(f"  search error:     {error}")
    print(f"  clusters:         {summary['clusters']} ({summary['clustered_faces']} unknown faces)")
    print(f"  API keys:         {summary['keys_file']} (0600): {', '.join(summary['keys'].values())}")
    print(f"  try by hand:      {summary['samples']} (a newcomer to enroll, two photos to verify)")
    print(f"  serve it:         {summary['serve']}")


if __name__ == "__main__":
    sys.exit(main())
