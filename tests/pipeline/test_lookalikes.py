"""Look-alike addresses never reach another person's profile: the mailbox key keeps them
apart, a look-alike of another subject is quarantined, and a profile whose stored address
has another key than the request is never acted on. Driven through the CLI and the pipeline
against the simulators on loopback, with both readings of Braze's address comparison."""

from __future__ import annotations

import json
import tempfile
import unicodedata
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconcile.engine.identity import normalize
from reconcile.models.mailbox import compat_form, look_alikes, mailbox_key
from reconcile.pipeline import plan_only
from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.ketch import KetchSim
from reconcile.sandbox.server import serve
from tests.cli.conftest import Job
from tests.pipeline.conftest import KEY, World

# one character -> its look-alikes: compatibility forms, Unicode case partners, a decomposed form
SWAPS = {"s": ["\u017f", "\uff53"], "k": ["\u212a", "\uff4b"], "a": ["\uff41", "\u00aa"], "e": ["\uff45"],
         "i": ["\u2170", "\uff49"], "o": ["\uff4f", "\u00ba"], "f": ["\uff46"]}
PAIRS = {"ss": "\u00df", "fi": "\ufb01", "\u00e9": "e\u0301", "\u00fc": "\u00dc"}


@st.composite
def confusable(draw: st.DrawFn) -> tuple[str, str]:
    """(a plain address, a look-alike of it that is another mailbox)."""
    stem = draw(st.sampled_from(["sissi", "kate", "fiona", "oskar", "ssa\u00e9", "k\u00fcfi", "asko"]))
    n = draw(st.integers(0, 99))
    base = f"{stem}{n}"
    spots = [i for i, c in enumerate(base) if c in SWAPS]
    pairs = [p for p in PAIRS if p in base]
    if pairs and draw(st.booleans()):
        pair = draw(st.sampled_from(pairs))
        look = base.replace(pair, PAIRS[pair], 1)
    else:
        i = draw(st.sampled_from(spots))
        look = base[:i] + draw(st.sampled_from(SWAPS[base[i]])) + base[i + 1:]
    return f"{base}@example.com", f"{look}@example.com"


def test_the_normal_form_is_the_documented_one() -> None:
    assert mailbox_key("  Kate@EXAMPLE.com ") == "kate@example.com"
    assert mailbox_key("\u212aate@example.com") == "\u212aate@example.com"  # the Kelvin sign is kept
    assert mailbox_key("u\u017fer@example.com") == "u\u017fer@example.com"
    assert mailbox_key("stra\u00dfe@example.com") == "stra\u00dfe@example.com"
    assert mailbox_key("\u00c9lise@M\u00fcnchen.DE") == "\u00c9lise@xn--mnchen-3ya.de"
    assert mailbox_key("a@xn--mnchen-3ya.de") == mailbox_key("a@m\u00fcnchen.de")
    _, bad = normalize(pd.Series(["a@exampl\u212a.com"]), "email")
    assert "IDNA 2008" in bad["reason"].iloc[0]
    assert look_alikes(["user@x.com", "u\u017fer@x.com", "\u00e9a@x.com", "e\u0301a@x.com"]) == {
        "u\u017fer@x.com": "user@x.com", "e\u0301a@x.com": "\u00e9a@x.com"}


@given(st.lists(confusable(), min_size=1, max_size=6))
def test_a_look_alike_key_is_never_the_key_of_its_original(pairs: list[tuple[str, str]]) -> None:
    for base, look in pairs:
        assert mailbox_key(look) != mailbox_key(base)
        assert compat_form(mailbox_key(look)) == compat_form(mailbox_key(base)) or \
            unicodedata.normalize("NFKC", look) != look or look.lower() != look


def _profiles_reached(plan, profiles: dict[str, str]) -> list[tuple[str, str]]:
    """(subject key, stored address) of every profile an action of the plan names."""
    out = []
    for action in plan.actions:
        for t in action.targets:
            if t.id_type.value == "braze_id":
                out.append((t.subject_key, profiles[t.value]))
            elif t.id_type.value == "email":
                out.append((t.subject_key, t.value))
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(confusable(), min_size=1, max_size=5, unique_by=lambda p: p[1]),
       st.sampled_from(["lower", "casefold"]), st.booleans())
def test_no_generated_look_alike_reaches_a_profile_other_than_its_own_in_a_plan(pairs, match, lookalike_exists):
    """Every original has a profile; a deletion request and an opt-out are filed for each
    look-alike (which has its own profile or not). No action of the plan reaches a profile
    whose stored address has another mailbox key than its subject."""
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        braze, ketch = BrazeSim(api_key=KEY, email_match=match), KetchSim(organization="acme")
        with serve(braze) as b, serve(ketch) as k:
            w = World(braze, ketch, b.url, k.url, tmp, f"sqlite:///{tmp / 'state.db'}")
            for topic in World.topics:
                braze.add_group(topic["subscription_group_id"])
            profiles: dict[str, str] = {}
            bases = sorted({base for base, _ in pairs})
            looks = sorted({look for _, look in pairs if mailbox_key(look) not in {mailbox_key(x) for x in bases}})
            for addr in bases + (looks if lookalike_exists else []):
                profiles[braze.add_profile(email=addr, groups={"sg-news": "subscribed"})] = addr
            for addr in looks:  # each look-alike opted out of everything in Ketch
                ketch.set_consent("email", addr, {"email_marketing": False}, 1_700_000_000)
            (tmp / "universe.csv").write_text("identity\n" + "".join(f"{a}\n" for a in bases + looks))
            (tmp / "deletions.csv").write_text("identity,requested_at\n" + "".join(
                f"{a},2026-01-01T00:00:00Z\n" for a in looks))
            cfg = w.config()
            with w.runtime(cfg) as rt:
                _result, planned = plan_only(rt)
            for subject, address in _profiles_reached(planned.plan, profiles):
                assert mailbox_key(address) == subject, (subject, address)
            deleted = {t.subject_key for a in planned.plan.actions if a.kind.value == "delete" for t in a.targets}
            assert not deleted & {mailbox_key(x) for x in bases}


def test_a_look_alike_deletion_through_the_cli_deletes_nobody_and_is_reported(world) -> None:
    """uſer@ (U+017F), Kate@ with the Kelvin sign and straße@ asked to be erased while
    user@, kate@ and strasse@ exist: nobody is deleted, the requests are quarantined and the
    run is partial (exit 4). Against a simulated Braze that folds look-alikes together."""
    w = world
    w.braze.db.email_match = "casefold"  # this simulated workspace folds look-alikes together (still empty)
    real = ["user@example.com", "kate@example.com", "strasse@example.com"]
    looks = ["u\u017fer@example.com", "\u212aate@example.com", "stra\u00dfe@example.com"]
    for topic in World.topics:
        w.braze.add_group(topic["subscription_group_id"])
    ids = {a: w.braze.add_profile(email=a, groups={"sg-news": "subscribed"}) for a in real}
    for a in real:
        w.ketch.set_consent("email", a, {"email_marketing": True}, 1_700_000_000)
    (w.tmp / "universe.csv").write_text("identity\n" + "".join(f"{a}\n" for a in real))
    (w.tmp / "deletions.csv").write_text("identity,requested_at\n" + "".join(
        f"{a},2026-01-01T00:00:00Z\n" for a in looks))
    path = w.tmp / "job.toml"
    path.write_text(w.toml("\n[guards]\nmin_universe = 1\n"), encoding="utf-8")
    job = Job(w, path)
    result = job.cli("run", "--format", "json")
    assert result.exit_code == 4, result.output
    out = json.loads(result.stdout)
    assert out["counts"]["missed_deletion"] == 0
    for a, braze_id in ids.items():
        assert [p.braze_id for p in w.braze.profiles_by_email(a)] == [braze_id]
    assert not [c for c in w.braze.calls if c["path"] == "/users/delete"]
    shown = job.cli("runs", "show", "latest", "--format", "json")
    exceptions = json.loads(shown.stdout)["exceptions"]
    assert sum("quarantined" in e["reason"] for e in exceptions) == 3
