"""A sandbox world over real loopback HTTP: Braze and Ketch simulators, a config, a runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import pytest

from reconcile.config import Config, parse_config
from reconcile.pipeline.session import Session, open_session
from reconcile.sandbox.braze import BrazeSim
from reconcile.sandbox.ketch import KetchSim
from reconcile.sandbox.population import SeedTruth, seed_population
from reconcile.sandbox.server import serve

KEY = "test-braze-key-4711"
NOW = datetime.now(timezone.utc).replace(microsecond=0)
TOPICS = [
    {"topic": "newsletter", "channel": "email", "subscription_group_id": "sg-news"},
    {"topic": "promotions", "channel": "email", "subscription_group_id": "sg-promo"},
    {"topic": "product_updates", "subscription_group_id": "sg-product"},
]


def job_toml(braze_url: str, ketch_url: str, *, topics: list[dict[str, str]] = TOPICS,
             state_url: str = "sqlite:///state.db", max_retries: int = 3, concurrency: int = 16,
             extra: str = "") -> str:
    """A job config file's text pointing at the loopback simulators (paths relative to its
    folder); `extra` is appended TOML."""
    mapped = "".join(
        f'\n[[mapping.topics]]\ntopic = "{t["topic"]}"\nsubscription_group_id = "{t["subscription_group_id"]}"\n'
        + (f'channel = "{t["channel"]}"\n' if t.get("channel") else "") for t in topics)
    return f"""
[braze]
rest_endpoint = "{braze_url}"
api_key_env = "BRAZE_API_KEY"
max_retries = {max_retries}

[ketch]
base_url = "{ketch_url}/web/v3"
organization = "acme"
property = "web"
environment = "production"
jurisdiction = "default"
concurrency = {concurrency}
requests_per_second = 0

[identity]
ketch_space = "email"
braze_key = "email"

[mapping]
email_purpose = "email_marketing"
blocklist_control = "do_not_contact"
global_control_engaged = "granted"
{mapped}
[universe]
csv = "universe.csv"
deletions_csv = "deletions.csv"
full_since = "2015-01-01"

[apply]
consistency_delay_seconds = 0

[state]
url = "{state_url}"

[report]
dir = "reports"
{extra}"""


@dataclass
class World:
    key: ClassVar[str] = KEY  # the Braze REST key the simulator accepts
    now: ClassVar[datetime] = NOW  # the runs' clock
    topics: ClassVar[list[dict[str, str]]] = TOPICS  # the mapped topics of config()
    braze: BrazeSim
    ketch: KetchSim
    braze_url: str
    ketch_url: str
    tmp: Path
    state_url: str
    slept: list[float] = field(default_factory=list)

    def config(self, key_type: str = "email", **sections: dict[str, Any]) -> Config:
        data: dict[str, Any] = {
            "braze": {"rest_endpoint": self.braze_url, "api_key_env": "BRAZE_API_KEY", "max_retries": 3},
            "ketch": {"base_url": self.ketch_url + "/web/v3", "organization": "acme", "property": "web",
                      "environment": "production", "jurisdiction": "default", "concurrency": 16,
                      "requests_per_second": 0},
            "identity": {"ketch_space": "email" if key_type == "email" else "account_id", "braze_key": key_type},
            "mapping": {"email_purpose": "email_marketing", "blocklist_control": "do_not_contact",
                        "global_control_engaged": "granted", "topics": TOPICS},
            "universe": {"csv": "universe.csv", "deletions_csv": "deletions.csv", "full_since": "2015-01-01"},
            "apply": {"consistency_delay_seconds": 0},
            "guards": {"min_universe": 1},  # worlds of a handful of subjects; an empty one is still refused
            "state": {"url": self.state_url},
            "report": {"dir": "reports"},
            "sandbox": {"enabled": True},  # only so the seeded files may be missing at load time
        }
        for name, values in sections.items():
            data[name] = {**data.get(name, {}), **values}
        cfg = parse_config(data, self.tmp)
        return Config(**{**cfg.__dict__, "sandbox": cfg.sandbox.__class__(enabled=False)})

    def toml(self, extra: str = "") -> str:
        """A job config file's text pointing at the loopback simulators (paths relative to
        its folder); `extra` is appended TOML."""
        return job_toml(self.braze_url, self.ketch_url, extra=extra)

    def seed(self, cfg: Config, subjects: int = 300, drift: float = 0.1, seed: int = 3) -> SeedTruth:
        return seed_population(cfg, self.braze, self.ketch, subjects=subjects, drift=drift, seed=seed, now=NOW)

    def runtime(self, cfg: Config) -> Session:
        return open_session(cfg, {"BRAZE_API_KEY": KEY}, clock=lambda: NOW)

    def writes(self) -> list[dict]:
        reads = ("/users/export/ids", "/subscription/status/get", "/subscription/user/status",
                 "/email/unsubscribes", "/email/hard_bounces")
        return [c for c in self.braze.calls if c["path"] not in reads]


@pytest.fixture
def world(tmp_path: Path) -> World:
    braze = BrazeSim(api_key=KEY)
    ketch = KetchSim(organization="acme")
    with serve(braze) as b, serve(ketch) as k:
        yield World(braze, ketch, b.url, k.url, tmp_path, f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def pg_world(world: World, store_url: str) -> World:
    """The same world with the state store on each backend (SQLite and PostgreSQL)."""
    world.state_url = store_url
    return world
