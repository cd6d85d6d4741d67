"""The flow library: ready-made campaign flows a store owner can switch on, each one an idea
from the requirement articles (docs/flow-library.md).

The flows are YAML files in `boomerang/campaigns/library/`, read with the same reader as
`boomerang flows set` (so a copy of one, edited, is an ordinary flow file). Each file opens
with a comment quoting the seed idea it implements; their templates are the built-in
``lib-<flow>-<n>`` templates. `install` validates the templates against the store's
templates directory and saves the flows with `services.campaigns.save_flows`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from boomerang.campaigns.flow import (
    Broadcast,
    BrowseAbandoned,
    CheckoutAbandoned,
    DateProperty,
    Flow,
    Inactivity,
    LoyaltyEvent,
    OrderPlaced,
    ReplenishmentDue,
    SegmentChange,
    Send,
    SimpleTrigger,
    SiteEvent,
    SupportEvent,
    Trigger,
)
from boomerang.errors import InputError, NotFoundError
from boomerang.services.campaign_render import validate_flow_templates
from boomerang.services.campaigns import FlowSaved, read_flow_files, save_flows
from boomerang.services.context import open_engine
from boomerang.store.repos import campaign_web as settings_repo
from boomerang.store.repos import stores as stores_repo
from boomerang.store.repos.campaign_triggers import segment_known

LIBRARY_DIR = Path(__file__).resolve().parent.parent / "campaigns" / "library"


@dataclass(frozen=True)
class LibraryFlow:
    """One library flow: its name, title, description, the seed idea it implements (the
    file's opening comment), a one-line trigger summary, the segment it needs (if any),
    its templates and its file."""

    name: str
    title: str
    description: str
    seed: str
    trigger: str
    segment: str | None
    templates: tuple[str, ...]
    path: Path


def library() -> list[LibraryFlow]:
    """Every flow of the library, by name."""
    paths = _paths()
    flows = read_flow_files(paths)
    return [_entry(flow, path) for flow, path in zip(flows, paths, strict=True)]


def library_flow(name: str) -> LibraryFlow:
    path = _path(name)
    (flow,) = read_flow_files([path])
    return _entry(flow, path)


def source(name: str) -> str:
    """The flow's YAML file, as text (to copy, edit and `boomerang flows set`)."""
    return _path(name).read_text(encoding="utf-8")


def flows(names: list[str] | None = None) -> list[Flow]:
    """The parsed flows (all when ``names`` is None), in the order asked."""
    return read_flow_files(_paths(names))


@dataclass
class InstallResult:
    """What `install` did: the flows saved (with their version and whether they changed),
    the flows left out because the store lacks the segment they need (flow -> segment),
    and template warnings (SMS length, CSS inlined per message)."""

    installed: list[FlowSaved] = field(default_factory=list)
    missing_segments: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def install(
    db: str, store: str, names: list[str] | None = None, *, start: int | None = None
) -> InstallResult:
    """Validate and save library flows into a store (all of them when ``names`` is None);
    new flows see triggers from ``start`` (default now).

    Templates are checked against the store's templates directory (a store may override a
    ``lib-*`` template file by file). A flow whose trigger needs a segment the store lacks
    (the built-ins appear after `boomerang segments refresh`): when the flows were named,
    nothing is installed and the error says which segment and what to run; when installing
    the whole library, the other flows are installed and the missing ones are listed in
    `InstallResult.missing_segments`.
    """
    chosen = flows(names)
    engine = open_engine(db)
    try:
        with engine.connect() as conn:
            row = stores_repo.get(conn, store)
            templates_dir = settings_repo.load_config(conn, row.id).get("templates_dir")
            missing = {
                f.name: segment
                for f in chosen
                if (segment := needs_segment(f.trigger)) is not None
                and not segment_known(conn, row.id, segment)
            }
        if missing and names is not None:
            listed = ", ".join(f"{flow} needs {seg!r}" for flow, seg in missing.items())
            raise InputError(
                f"the store {store!r} lacks segments these flows need: {listed}",
                hint="run `boomerang segments refresh` (it creates the built-in segments) or "
                "create the segment, then install again",
            )
        out = InstallResult(missing_segments=missing)
        ready = [f for f in chosen if f.name not in missing]
        for f in ready:
            out.warnings += validate_flow_templates(
                f, None if templates_dir is None else str(templates_dir), currency=row.currency
            )
        if ready:
            out.installed = save_flows(engine, store, ready, start=start)
        return out
    finally:
        engine.dispose()


def needs_segment(trigger: Trigger) -> str | None:
    """The segment a trigger reads (segment changes and broadcasts), else None."""
    return trigger.segment if isinstance(trigger, SegmentChange | Broadcast) else None


def describe_trigger(trigger: Trigger) -> str:
    """A one-line summary of a trigger for listings."""
    t = trigger
    if isinstance(t, OrderPlaced):
        return {"first": "first order", "any": "any order"}.get(t.which, f"order number {t.n}")
    if isinstance(t, CheckoutAbandoned):
        return f"checkout started, no order within {t.hours} h"
    if isinstance(t, BrowseAbandoned):
        return f"product viewed, nothing added to the cart or ordered within {t.hours} h"
    if isinstance(t, SimpleTrigger):
        return "signed up" if t.type == "signed_up" else "account created"
    if isinstance(t, SegmentChange):
        verb = "entered" if t.type == "segment_entered" else "left"
        return f"{verb} segment {t.segment}"
    if isinstance(t, Inactivity):
        return f"no {t.of} for {t.days} days"
    if isinstance(t, ReplenishmentDue):
        how = {"lifespan": "lifespan", "learned": "learned interval"}.get(
            t.source, "lifespan, else learned interval"
        )
        return f"{t.days_before} days before a purchased product runs out ({how})"
    if isinstance(t, DateProperty):
        what = t.property.replace("_", " ")
        return f"on the {what}" if t.days_before == 0 else f"{t.days_before} days before {what}"
    if isinstance(t, LoyaltyEvent):
        return f"loyalty event {t.event}"
    if isinstance(t, SiteEvent):
        where = "; ".join(
            f"{key} in {', '.join(str(v) for v in values)}" for key, values in t.where.items()
        )
        return f"event {t.event}" + (f" where {where}" if where else "")
    if isinstance(t, SupportEvent):
        return f"support event {t.event}"
    assert isinstance(t, Broadcast)
    every = f"every {t.every_days} days" if t.every_days and t.every_days > 1 else "daily"
    when = f"{t.at:%Y-%m-%d %H:%M} UTC"
    text = f"broadcast to {t.segment}, " + (f"{every} from {when}" if t.every_days else when)
    return text + (f", expires after {t.expires_hours} h" if t.expires_hours else "")


# -- files ----------------------------------------------------------------------------------


def names() -> list[str]:
    return sorted(p.stem for p in LIBRARY_DIR.glob("*.yaml"))


def _path(name: str) -> Path:
    path = LIBRARY_DIR / f"{name}.yaml"
    if name not in names():
        raise NotFoundError(
            f"no library flow {name!r}",
            hint=f"the library has: {', '.join(names())} (`boomerang flows library list`)",
        )
    return path


def _paths(wanted: list[str] | None = None) -> list[Path]:
    if wanted is None:
        return [LIBRARY_DIR / f"{n}.yaml" for n in names()]
    if not wanted:
        raise InputError("no library flows named", hint="name some, or give none for all")
    dupes = sorted({n for n in wanted if wanted.count(n) > 1})
    if dupes:
        raise InputError(f"library flow {dupes[0]!r} named twice", hint="name each once")
    return [_path(n) for n in wanted]


def _seed(path: Path) -> str:
    """The file's opening comment block, as one line (the seed idea it implements)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(x for x in lines if x)


def _entry(flow: Flow, path: Path) -> LibraryFlow:
    templates = tuple(dict.fromkeys(s.send.template for s in flow.steps if isinstance(s, Send)))
    return LibraryFlow(
        name=flow.name,
        title=flow.title,
        description=flow.description,
        seed=_seed(path),
        trigger=describe_trigger(flow.trigger),
        segment=needs_segment(flow.trigger),
        templates=templates,
        path=path,
    )
