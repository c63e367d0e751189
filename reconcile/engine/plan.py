"""Pure planning: drift table in, batched actions out (semantics §5).

Each action is one Braze request (or one Ketch write-back batch) at the endpoint's
documented limit (clients/limits.py). Targets are chosen per kind and key type: a global
opt-out under `email` keys addresses each subscribed profile of the address by braze_id
(`users/track` by email would reach only one of them), group writes go by the subject's
key (by email they reach every profile sharing the address), deletions by the subject's
key (by email with the configured prioritization). Action ids are deterministic in the plan
id and the batch's content, so a resumed apply can tell what it already sent. Plan ids are
unique per run.
"""

from __future__ import annotations

import gc
import hashlib
import json
import operator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Iterator

import numpy as np
import numpy.typing as npt
import pandas as pd

from reconcile.clients.limits import ENDPOINT, batch_limit
from reconcile.engine.diff import EVERY_PROFILE, SUBSCRIBED, Rules
from reconcile.errors import DataError
from reconcile.models.plan import Action, ActionKind, DriftKey, Field, IdType, Plan, Target, WriteBack


def fingerprint(*parts: Any) -> str:
    """A stable hash of plan inputs (frames are hashed by content, order-independent)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, pd.DataFrame):
            cols = sorted(part.columns)
            text = part[cols].astype("string").fillna("<NA>")  # one dtype: hashes do not depend on storage
            rows = np.sort(pd.util.hash_pandas_object(text, index=False).to_numpy())  # row order does not matter
            h.update("|".join(cols).encode())
            h.update(rows.tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x1e")
    return h.hexdigest()[:24]


_FIELDS = {f.value: f for f in Field}
_GROUP_KINDS = (ActionKind.GROUP_UNSUBSCRIBE, ActionKind.GROUP_SUBSCRIBE)
_ENCODE = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str (C)


def _column(drift: pd.DataFrame, name: str) -> npt.NDArray[np.object_]:
    """A drift column as an object array, missing values as None."""
    values: npt.NDArray[np.object_] = drift[name].to_numpy(dtype=object, na_value=None)  # type: ignore[call-overload]
    return values


def _fields(raw: pd.Series) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.bool_]]:
    """The Field of every raw field value, and which rows are group fields, looked up once
    per distinct value; DataError names the first unknown value in row order."""
    codes, found = pd.factorize(raw, use_na_sentinel=False)
    uniques: list[Any] = [None if pd.isna(f) else f for f in found]
    known = np.empty(len(uniques), dtype=object)
    try:
        for i, f in enumerate(uniques):
            known[i] = _FIELDS[f]
    except KeyError as exc:
        raise DataError(f"drift field {exc.args[0]!r} is not one of {', '.join(_FIELDS)}") from None
    group = np.fromiter((f == "group" for f in uniques), dtype=bool, count=len(uniques))
    return known[codes], group[codes]


@dataclass(frozen=True)
class _KeyColumns:
    """The DriftKey fields of drift rows as column arrays, in row order."""

    subject: npt.NDArray[np.object_]
    drift_class: npt.NDArray[np.object_]
    field: npt.NDArray[np.object_]
    group: npt.NDArray[np.object_]  # None unless a group field
    is_group: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, drift: pd.DataFrame) -> "_KeyColumns":
        field, is_group = _fields(drift["field"])
        group = np.where(is_group, _column(drift, "group_id"), np.full(len(drift), None, dtype=object))
        return cls(_column(drift, "subject_key"), _column(drift, "drift_class"), field, group, is_group)

    def keys(self, rows: npt.NDArray[np.intp] | slice = slice(None)) -> list[DriftKey]:
        return list(map(DriftKey, self.subject[rows].tolist(), self.drift_class[rows].tolist(),
                        self.field[rows].tolist(), self.group[rows].tolist()))

    def json(self) -> npt.NDArray[np.object_]:
        """Each row's `DriftKey.to_json()` as JSON text (a Field is a str of its value). The
        (class, field, group) part is written once per distinct combination when those
        columns hold only strings and None (values of other types could compare equal
        across types, 1 == True, and are written row by row)."""
        rest = [self.drift_class, self.field, self.group]
        if all(pd.api.types.infer_dtype(c, skipna=True) in ("string", "empty") for c in rest):
            combo = np.zeros(len(self.subject), dtype=np.int64)
            for c in rest:
                codes, uniques = pd.factorize(c, use_na_sentinel=False)
                combo, _ = pd.factorize(combo * max(len(uniques), 1) + codes)  # renumbered: stays below n
            _, first, inverse = np.unique(combo, return_index=True, return_inverse=True)
            tail = [", ".join(_json_texts(_objects_array([c[i] for c in rest]))) + "]" for i in first.tolist()]
            texts = map("[{}, {}".format, _json_texts(self.subject), _objects_array(tail)[inverse.reshape(-1)].tolist())
        else:
            texts = map("[{}, {}, {}, {}]".format, _json_texts(self.subject), _json_texts(self.drift_class),
                        _json_texts(self.field), _json_texts(self.group))
        return _objects_array(list(texts))


def drift_keys(drift: pd.DataFrame) -> list[DriftKey]:
    """The DriftKey of every drift row, in row order."""
    with _gc_paused():
        return _KeyColumns.of(drift).keys()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Cyclic garbage collection paused while a plan's objects are made: they hold no
    cycles, and each full collection walks every object made so far (a third of
    build_plan's time at 1M subjects)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _objects_array(values: list[Any]) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _json_texts(values: npt.NDArray[np.object_]) -> list[str]:
    """`json.dumps` of each value: a str through the encoder json.dumps itself uses for one,
    None as null, anything else through json.dumps (one C call a value, no Python loop
    unless a value is not a str)."""
    items = values.tolist()
    try:
        return list(map(_ENCODE, items))
    except TypeError:  # None, or a value that is not a str
        pass
    out = np.full(len(items), "null", dtype=object)
    text = np.fromiter(map(isinstance, items, repeat(str)), dtype=bool, count=len(items))
    out[text] = list(map(_ENCODE, values[text].tolist()))
    other = np.flatnonzero(~text & np.fromiter(map(operator.is_not, items, repeat(None)), dtype=bool,
                                               count=len(items)))
    for i in other.tolist():
        out[i] = json.dumps(items[i])
    return list(out.tolist())


# ----------------------------------------------------------------------------- targets and batches


def _profile_targets(profiles: pd.DataFrame, kind: ActionKind) -> pd.DataFrame:
    """subject_key, value: the profiles a global write must reach, by braze_id."""
    state = profiles["email_subscribe"].astype("string")
    want = state.isin(SUBSCRIBED).fillna(False) if kind is ActionKind.GLOBAL_UNSUBSCRIBE \
        else (state == "unsubscribed").fillna(False)
    hit = profiles[want.to_numpy() & profiles["braze_id"].notna().to_numpy()]
    return pd.DataFrame({"subject_key": hit["subject_key"].astype(str), "value": hit["braze_id"].astype(str)})


def _every_profile(todo: pd.DataFrame, kind: ActionKind, rules: Rules) -> npt.NDArray[np.bool_] | None:
    """For deletions under email keys: the rows whose every profile is deleted by braze_id
    (diff.EVERY_PROFILE); None for other kinds or when there is none."""
    if kind is not ActionKind.DELETE or rules.key_type != "email" or "expected" not in todo.columns:
        return None
    every = (todo["expected"] == EVERY_PROFILE).fillna(False).to_numpy(dtype=bool)
    return every if every.any() else None


def _targets(rows: pd.DataFrame, kind: ActionKind, rules: Rules, emails: pd.Series,
             profiles: pd.DataFrame, subjects_sorted: npt.NDArray[np.object_],
             by_profile: bool = False) -> tuple[IdType, pd.DataFrame, bool]:
    """(id type, frame of subject_key + value, whether that frame is already one row per
    subject in subject order) for the drift rows of one kind, sorted by subject
    (`subjects_sorted`: their subject keys, missing as None). `by_profile`: deletions of
    every profile of each subject, by braze_id."""
    subjects = rows.iloc[_run_starts(subjects_sorted)]  # the first row of each subject
    by_key = IdType.EMAIL if rules.key_type == "email" else IdType.EXTERNAL_ID
    if by_profile:
        mine = _among(profiles["subject_key"], subjects["subject_key"])
        hit = profiles[mine & profiles["braze_id"].notna().to_numpy()]
        return IdType.BRAZE_ID, pd.DataFrame({"subject_key": hit["subject_key"].astype(str),
                                              "value": hit["braze_id"].astype(str)}), False
    if kind in (ActionKind.GLOBAL_UNSUBSCRIBE, ActionKind.GLOBAL_SUBSCRIBE) and rules.key_type == "email":
        return IdType.BRAZE_ID, _profile_targets(profiles[_among(profiles["subject_key"], subjects["subject_key"])],
                                                 kind), False
    if kind in (ActionKind.BLOCKLIST, ActionKind.ALIAS_OPTOUT):
        values = subjects["subject_key"].map(emails)
        return IdType.EMAIL, pd.DataFrame({"subject_key": subjects["subject_key"], "value": values}).dropna(), True
    id_type = IdType.KETCH if kind is ActionKind.KETCH_WRITEBACK else by_key
    return (id_type, pd.DataFrame({"subject_key": subjects["subject_key"], "value": subjects["identity"]}).dropna(),
            True)


def _sms_targets(subjects: pd.Series, sms: pd.DataFrame | None) -> list[tuple[IdType, pd.DataFrame]]:
    """(id type, subject_key + value) per id type an SMS group's subjects are written by; a
    subject with no phone and no external id has no target (it cannot be reached)."""
    if sms is None or not len(sms):
        return []
    mine = sms[_among(sms["subject_key"], subjects)]
    out = []
    for id_type in (IdType.PHONE, IdType.EXTERNAL_ID):
        rows = mine[(mine["id_type"] == id_type.value).fillna(False).to_numpy()]
        if len(rows):
            out.append((id_type, pd.DataFrame({"subject_key": rows["subject_key"].astype(str),
                                               "value": rows["value"].astype(str)})))
    return out


def _among(values: pd.Series, keys: pd.Series) -> npt.NDArray[np.bool_]:
    """`values.isin(keys)` (a missing value matches a missing key) through one factorize of
    both: hash-coded in one pass instead of a lookup per value."""
    codes, uniques = pd.factorize(pd.concat([values, keys], ignore_index=True), use_na_sentinel=False)
    wanted = np.zeros(len(uniques), dtype=bool)
    wanted[codes[len(values):]] = True
    return wanted[codes[:len(values)]]


def _by_subject_and_field(todo: pd.DataFrame, subjects: npt.NDArray[np.object_]) -> npt.NDArray[np.intp]:
    """Row positions stably sorted by (subject_key, field). Drift tables come sorted by
    subject: then only each subject's rows are ordered by field (a lexsort of integer codes)."""
    try:
        in_order = bool(np.all(subjects[1:] >= subjects[:-1]))
    except TypeError:  # a missing or non-text subject: pandas sorts it
        in_order = False
    if in_order and todo["field"].notna().all():
        start = np.zeros(len(todo), dtype=bool)
        start[_run_starts(subjects)] = True
        field_codes, _ = pd.factorize(todo["field"], sort=True)
        return np.lexsort((field_codes, np.cumsum(start))).astype(np.intp)
    order = todo[["subject_key", "field"]].sort_values(["subject_key", "field"], kind="stable").index
    return order.to_numpy(dtype=np.intp)


def build_plan(drift: pd.DataFrame, emails: pd.Series, profiles: pd.DataFrame, rules: Rules, *, plan_fp: str,
               plan_id: str, track_batch_size: int = 75, sms_targets: pd.DataFrame | None = None,
               phones: pd.Series | None = None) -> Plan:
    """Batch the actionable drift rows. `emails` maps subject_key -> email (blocklist, alias);
    `profiles` is the braze_profiles frame (which profiles a global write reaches);
    `sms_targets` (subject_key, id_type, value; engine/sms.py) what an SMS group is written
    by under email keys: by phone or external id, one action per id type, never by email; `phones` (subject_key ->
    E.164) the number an SMS opt-out written back to Ketch names.

    Per kind (and group) the rows are sorted by subject and field, the targets are batched by
    subject run lengths, and each batch's drift keys are the rows of its subjects: index
    arithmetic on column arrays. Python objects are made only for what the plan holds (a
    Target per target, a DriftKey per planned row, an Action per batch); action ids hash
    JSON texts made a column at a time."""
    used = [c for c in ("subject_key", "identity", "drift_class", "field", "action", "group_id",
                        "braze_unsubscribed_at", "expected") if c in drift.columns]
    todo = drift[used][drift["action"].fillna("").astype(str) != ""].reset_index(drop=True)
    with _gc_paused():
        cols = _KeyColumns.of(todo)  # refuses an unknown field before anything is planned
        key_json = cols.json()
        actions: list[Action] = []
        kinds = sorted({ActionKind(a) for a in todo["action"].unique()}, key=lambda k: (k.phase, k.value))
        # one stable sort by (subject, field): restricted to a kind's (or group's) rows it is
        # that part's stable sort
        order_pos = _by_subject_and_field(todo, cols.subject)
        by_group = todo["group_id"].astype(str) if any(k in _GROUP_KINDS for k in kinds) else None
        sms_groups = frozenset(m.subscription_group_id for m in rules.topics if m.sms)
        for kind in kinds:
            mine = (todo["action"] == kind.value).fillna(False).to_numpy(dtype=bool)
            groups: list[tuple[str | None, npt.NDArray[np.bool_]]] = [(None, mine)]
            if kind in _GROUP_KINDS:
                assert by_group is not None
                ids = by_group[mine]  # as text; NA stays NA and such rows form no group
                groups = [(g, mine & (by_group == g).fillna(False).to_numpy(dtype=bool))
                          for g in sorted(ids.dropna().unique().tolist())]
            every = _every_profile(todo, kind, rules)
            if every is not None:  # deletions that reach every profile of an address, by braze_id
                groups = [(None, mine & ~every), (None, mine & every)]
            for group_id, member in groups:
                pos = order_pos[member[order_pos]]
                if group_id in sms_groups and rules.key_type == "email":
                    for id_type, targets in _sms_targets(todo["subject_key"].iloc[pos], sms_targets):
                        batches = _Batches.of(targets, batch_limit(kind, track_batch_size), cols.subject[pos])
                        if batches is not None:
                            actions += _actions(kind, id_type, group_id, batches, pos, cols, key_json, None, rules,
                                                plan_id, len(actions))
                    continue
                by_profile = every is not None and bool(every[pos].any())
                id_type, targets, ready = _targets(todo[["subject_key", "identity"]].iloc[pos], kind, rules, emails,
                                                   profiles, cols.subject[pos], by_profile)
                batches = _Batches.of(targets, batch_limit(kind, track_batch_size), cols.subject[pos], ready)
                if batches is None:
                    continue
                writeback = _writebacks(todo.iloc[pos], batches, _sms_phones(phones, sms_groups)) \
                    if kind is ActionKind.KETCH_WRITEBACK else None
                actions += _actions(kind, id_type, group_id, batches, pos, cols, key_json, writeback, rules,
                                    plan_id, len(actions))
        return Plan(plan_id=plan_id, fingerprint=plan_fp, actions=tuple(actions))


@dataclass(frozen=True)
class _Batches:
    """One kind's (and group's) targets in batch order, the batch edges, and which drift
    rows each batch corrects (positions among the kind's sorted rows)."""

    subjects: npt.NDArray[np.object_]  # per target
    values: npt.NDArray[np.object_]  # per target
    edges: npt.NDArray[np.intp]  # batch i holds targets edges[i]:edges[i + 1]
    key_rows: npt.NDArray[np.intp]  # the rows of the batches' drift keys, batch after batch
    key_edges: npt.NDArray[np.intp]  # batch i corrects key_rows[key_edges[i]:key_edges[i + 1]]
    seg_start: npt.NDArray[np.intp]  # per (batch, subject) segment: its first target
    seg_rows: npt.NDArray[np.intp]  # per segment: the first row of its subject (-1: none)
    seg_edges: npt.NDArray[np.intp]  # batch i holds segments seg_edges[i]:seg_edges[i + 1]

    @classmethod
    def of(cls, targets: pd.DataFrame, size: int, row_subjects: npt.NDArray[np.object_],
           ready: bool = False) -> "_Batches | None":
        """Split (subject, value) pairs into batches of at most `size` values, keeping one
        subject's values together unless they alone exceed `size`. `row_subjects` are the
        subject keys of the kind's sorted drift rows: a subject's drift keys are one run.
        `ready`: the pairs are already one per subject, in subject order."""
        t = targets if ready else \
            targets.drop_duplicates(["subject_key", "value"]).sort_values("subject_key", kind="stable")
        subjects = t["subject_key"].astype(str).to_numpy(dtype=object)
        values = t["value"].astype(str).to_numpy(dtype=object)
        n = len(subjects)
        if not n:
            return None
        starts = _run_starts(subjects)
        edges = _pack(starts, np.diff(np.r_[starts, n]), size)
        mark = np.zeros(n, dtype=bool)  # segments: one subject's targets within one batch
        mark[starts] = True
        mark[edges[:-1]] = True
        seg = np.flatnonzero(mark)
        seg_edges = np.searchsorted(seg, edges)
        run = np.searchsorted(starts, seg, side="right") - 1
        lo, length = _rows_of(row_subjects, subjects[starts])
        lo, length = lo[run], length[run]
        total = int(length.sum())
        seg_first = np.cumsum(length) - length
        key_rows = np.repeat(np.maximum(lo, 0) - seg_first, length) + np.arange(total)
        return cls(subjects, values, edges, key_rows.astype(np.intp), np.r_[seg_first, total][seg_edges],
                   seg, lo, seg_edges)


def _run_starts(values: npt.NDArray[np.object_]) -> npt.NDArray[np.intp]:
    """Where each run of equal values starts."""
    if not len(values):
        return np.zeros(0, dtype=np.intp)
    return np.flatnonzero(np.r_[True, values[1:] != values[:-1]])


def _rows_of(rows: npt.NDArray[np.object_], subjects: npt.NDArray[np.object_]) -> tuple[
        npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(first row, row count) of each of `subjects` in the sorted `rows`; (-1, 0) for a
    subject without rows."""
    starts = _run_starts(rows)
    ends = np.r_[starts[1:], len(rows)]
    found = rows[starts]
    if len(found) == len(subjects) and bool(np.all(found == subjects)):
        run = np.arange(len(subjects))  # every subject has targets: the same runs
    else:
        run = pd.Index(found, dtype=object).get_indexer(pd.Index(subjects, dtype=object))
    hit = run >= 0
    lo = np.where(hit, starts[run], -1)
    return lo.astype(np.intp), np.where(hit, ends[run] - starts[run], 0).astype(np.intp)


def _pack(starts: npt.NDArray[np.intp], counts: npt.NDArray[np.intp], size: int) -> npt.NDArray[np.intp]:
    """Batch edges over subject runs (start, count): batch i is targets edges[i]:edges[i + 1].
    A batch takes whole subjects while they fit; a subject with more than `size` values
    fills whole batches and its remainder opens the next one. One step per batch (the runs
    that fit are found by a search in the run starts), not per subject."""
    n = int(starts[-1] + counts[-1])
    cum = np.r_[starts, n]  # cum[j]: where run j starts; cum[-1]: the end
    edges = [0]
    j, filled = 0, 0
    while j < len(counts):
        start, count = int(cum[j]), int(counts[j])
        if filled and filled + count > size:
            edges.append(start)
            filled = 0
        if count > size:  # one subject alone fills whole batches; its remainder opens the next one
            full = count // size * size
            edges += range(start + size, start + full + 1, size)
            filled = count - full
            j += 1
            continue
        k = int(np.searchsorted(cum, start + size - filled, side="right")) - 1  # runs j..k-1 fit
        filled += int(cum[k]) - start
        j = k
    if filled:
        edges.append(n)
    return np.asarray(edges, dtype=np.intp)


# ----------------------------------------------------------------------------- actions


def _actions(kind: ActionKind, id_type: IdType, group_id: str | None, b: _Batches, pos: npt.NDArray[np.intp],
             cols: _KeyColumns, key_json: npt.NDArray[np.object_], writeback: list[WriteBack] | None,
             rules: Rules, plan_id: str, seq: int) -> list[Action]:
    """The actions of one kind (and group), one per batch, numbered from `seq`. Each id
    hashes the text `Action.content_hash` hashes (sorted keys, default separators), joined
    from per-row JSON texts."""
    rows = pos[b.key_rows]
    keys = cols.keys(rows)
    targets = list(map(Target, b.subjects.tolist(), repeat(id_type, len(b.subjects)), b.values.tolist()))
    key_text = key_json[rows].tolist()
    target_text = list(map(f"[{{}}, {json.dumps(id_type.value)}, {{}}]".format, _json_texts(b.subjects),
                           _json_texts(b.values)))
    prioritization: tuple[str, ...] = ()
    if kind is ActionKind.DELETE and id_type is IdType.EMAIL:
        prioritization = tuple(rules.deletion_prioritization) or ("most_recently_updated",)
    endpoint = ENDPOINT[kind]
    middle = (f'"endpoint": {json.dumps(endpoint)}, "group_id": {json.dumps(group_id)}, '
              f'"kind": {json.dumps(kind.value)}, "prioritization": {json.dumps(list(prioritization))}')
    edges, key_edges = b.edges.tolist(), b.key_edges.tolist()
    out = []
    for i in range(len(edges) - 1):
        wb = tuple(writeback[b.seg_edges[i]:b.seg_edges[i + 1]]) if writeback is not None else ()
        wb_text = json.dumps([w.to_json() for w in wb], sort_keys=True) if wb else "[]"
        body = (f'{{"drift_keys": [{", ".join(key_text[key_edges[i]:key_edges[i + 1]])}], {middle}, '
                f'"targets": [{", ".join(target_text[edges[i]:edges[i + 1]])}], "writeback": {wb_text}}}')
        content = hashlib.sha256(body.encode()).hexdigest()
        action_id = hashlib.sha256(f"{plan_id}\x1e{content}".encode()).hexdigest()[:20]
        out.append(Action(action_id, plan_id, seq + i, kind, tuple(targets[edges[i]:edges[i + 1]]),
                          tuple(keys[key_edges[i]:key_edges[i + 1]]), endpoint, group_id, prioritization, wb))
    return out


def _sms_phones(phones: pd.Series | None, sms: frozenset[str]) -> tuple[dict[str, str], frozenset[str]]:
    """(subject_key -> E.164, the SMS groups `sms`) for write-backs."""
    if phones is None or not sms:
        return {}, sms
    known = phones.dropna()
    return dict(zip(known.index.astype(str), known.astype(str))), sms


def _writebacks(rows: pd.DataFrame, b: _Batches,
                sms: tuple[dict[str, str], frozenset[str]] = ({}, frozenset())) -> list[WriteBack]:
    """One WriteBack per (batch, subject) segment: the subject's group fields (in row
    order), whether its global field is among its rows, and its newest Braze opt-out time
    (epoch when none). `rows` are the kind's drift rows, sorted by subject."""
    start = np.zeros(len(rows), dtype=bool)
    start[_run_starts(_column(rows, "subject_key"))] = True
    run = np.cumsum(start) - 1  # each row's subject, numbered in row order
    n = int(run[-1]) + 1 if len(run) else 0
    group_ids = rows["group_id"].tolist()
    in_group = (rows["field"] == Field.GROUP).fillna(False).to_numpy(dtype=bool) & rows["group_id"].notna().to_numpy()
    is_email = (rows["field"] == Field.EMAIL_SUBSCRIBE).fillna(False).to_numpy(dtype=bool)
    at = pd.to_datetime(rows["braze_unsubscribed_at"], utc=True, errors="coerce", format="ISO8601")
    newest = at.groupby(run).max().reindex(range(n)).tolist()
    email = np.bincount(run[is_email], minlength=n) > 0
    groups: list[list[str]] = [[] for _ in range(n)]
    for r, i in zip(run[in_group].tolist(), np.flatnonzero(in_group).tolist()):
        groups[r].append(str(group_ids[i]))
    epoch = pd.Timestamp(0, tz="UTC").isoformat()
    out = []
    for subject, lo in zip(b.subjects[b.seg_start].tolist(), b.seg_rows.tolist()):
        if lo < 0:  # no drift rows for this subject (targets are made from them: does not happen)
            out.append(WriteBack(subject, (), False, epoch))
            continue
        r = int(run[lo])
        phone = sms[0].get(subject) if sms[1] & set(groups[r]) else None
        out.append(WriteBack(subject, tuple(groups[r]), bool(email[r]),
                             epoch if pd.isna(newest[r]) else newest[r].isoformat(), phone))
    return out


# ----------------------------------------------------------------------------- plan documents


def plan_document(plan: Plan, drift: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """The JSON form saved in the state store and written by `plan --out`."""
    rows = drift.astype(object).where(drift.notna(), None)
    return {"plan_id": plan.plan_id, "fingerprint": plan.fingerprint, **extra,
            "actions_hash": plan.actions_hash(),
            "drift": json.loads(rows.to_json(orient="records", date_format="iso")),
            "actions": [a.to_json() for a in plan.actions]}


def plan_from_document(d: Any) -> Plan:
    """A saved plan, checked: DataError names what is missing instead of failing mid-apply."""
    if not isinstance(d, dict):
        raise DataError("not a plan: expected a JSON object written by `reconcile plan --out`")
    missing = [k for k in ("plan_id", "fingerprint", "config_hash", "drift", "actions") if k not in d]
    if missing:
        raise DataError(f"plan file lacks {', '.join(missing)}; write it again with `reconcile plan --out`")
    if not isinstance(d["actions"], list):
        raise DataError("plan file: `actions` is not a list; write it again with `reconcile plan --out`")
    actions = tuple(Action.from_json(a, i) for i, a in enumerate(d["actions"]))
    return Plan(str(d["plan_id"]), str(d["fingerprint"]), actions)
