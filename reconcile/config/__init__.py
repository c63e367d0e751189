"""Configuration: one TOML file loaded into frozen dataclasses.

`model.py` holds the dataclasses, `parsing.py` loads and checks a file, `notify.py`,
`metrics.py` and `report.py` check their sections, `extras.py` the optional packages a
config needs, `schedules.py` the scheduler's file of jobs.
"""

from reconcile.config.model import (
    CONFIG_ENV, DEFAULT_RATE_LIMITS, SANDBOX_BRAZE_KEY, ApplyConfig, BrazeConfig, Config, GuardConfig, IdentityConfig,
    KetchConfig, LedgerConfig, MappingConfig, PolicyConfig, RateLimit, ReportConfig, SandboxConfig, SqlSource,
    StateConfig, TopicMapping, UniverseConfig, api_key_problem, braze_api_key, has_control_chars, secret, state_url,
)
from reconcile.config.parsing import (
    PROXY_VARS, check_environment, check_file, config_path, load_config, parse_config, proxy_problems,
)

__all__ = [
    "CONFIG_ENV", "DEFAULT_RATE_LIMITS", "PROXY_VARS", "SANDBOX_BRAZE_KEY", "ApplyConfig", "BrazeConfig", "Config",
    "GuardConfig", "IdentityConfig", "KetchConfig", "LedgerConfig", "MappingConfig", "PolicyConfig", "RateLimit",
    "ReportConfig", "SandboxConfig", "SqlSource", "StateConfig", "TopicMapping", "UniverseConfig", "api_key_problem",
    "braze_api_key", "check_environment", "check_file", "config_path", "has_control_chars", "load_config",
    "parse_config", "proxy_problems", "secret", "state_url",
]
