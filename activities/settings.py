"""Worker configuration for the activities, read from the environment once at start-up.

Everything that differs between the simulator and real Google Cloud lives here, so the
activities themselves have one code path (the simulator speaks the same REST subset).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_BACKEND = "REMEDIATION_BACKEND"
ENV_GCP_ENDPOINT = "REMEDIATION_GCP_ENDPOINT"
ENV_APP_URL = "REMEDIATION_APP_URL"
ENV_PROBE_TOKEN = "REMEDIATION_PROBE_TOKEN"
ENV_POLL_INTERVAL = "REMEDIATION_POLL_INTERVAL_S"

# Field name -> environment variable, so a validation error can name the variable.
_ENV_OF_FIELD = {
    "backend": ENV_BACKEND,
    "gcp_endpoint": ENV_GCP_ENDPOINT,
    "app_url": ENV_APP_URL,
    "probe_token": ENV_PROBE_TOKEN,
    "poll_interval_s": ENV_POLL_INTERVAL,
}


class SettingsError(ValueError):
    """A bad configuration value; the message names the environment variable."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: Literal["sim", "gcp"] = "sim"
    # Base URL of the simulator; ignored for the real backend (default Google endpoints).
    gcp_endpoint: str = "http://127.0.0.1:8090"
    # Where probes go when a request gives no base_url. None with backend=sim means the
    # simulator itself (it serves the application endpoints at its root).
    app_url: str | None = None
    probe_token: str = Field(default="probe-token", min_length=1)
    # Long-running-operation polling period (tests use ~0.2 s against a fast simulator).
    poll_interval_s: float = Field(default=2.0, gt=0, le=300)

    def model_post_init(self, _ctx: object) -> None:
        for field in ("gcp_endpoint", "app_url"):
            value = getattr(self, field)
            if value is not None and not value.startswith(("http://", "https://")):
                raise SettingsError(
                    f"{_ENV_OF_FIELD[field]}={value!r}: must start with http:// or https://")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        raw: dict[str, object] = {}
        for field, var in _ENV_OF_FIELD.items():
            value = env.get(var)
            if value is not None and value.strip() != "":
                raw[field] = value.strip()
        try:
            return cls(**raw)
        except ValidationError as err:
            problems = []
            for e in err.errors(include_url=False):
                field = str(e["loc"][0]) if e["loc"] else ""
                var = _ENV_OF_FIELD.get(field, field)
                problems.append(f"{var}={raw.get(field)!r}: {e['msg']}")
            raise SettingsError("; ".join(problems)) from None

    @property
    def is_sim(self) -> bool:
        return self.backend == "sim"

    def app_base_url(self, base_url: str | None) -> str:
        """The application URL a probe targets: the request's, else the configured one."""
        url = base_url or self.app_url or (self.gcp_endpoint if self.is_sim else None)
        if not url:
            raise SettingsError(
                f"{ENV_APP_URL} is not set and the request gives no base_url; the real "
                "backend needs the application's URL to probe it")
        return url.rstrip("/")
