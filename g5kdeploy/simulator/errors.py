"""The error the API layer turns into a plain-text answer, as g5k-api does."""

from __future__ import annotations

FORBIDDEN = "You are not authorized to access this resource"
OAR_API = "https://api.grid5000.fr/{version}/sites/{site}/internal/oarapi/{what}"


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def oar_relay(version: str, site: str, what: str, body: str, status: int = 400) -> ApiError:
    """An OAR refusal relayed the way g5k-api wraps its internal OAR API answers."""
    url = OAR_API.format(version=version, site=site, what=what)
    return ApiError(status, f"Request to {url} failed with status {status}: {body}")
