"""The error the API layer turns into a plain-text answer, as g5k-api does."""

from __future__ import annotations

FORBIDDEN = "You are not authorized to access this resource"
OAR_API = "https://api.grid5000.fr/{version}/sites/{site}/internal/oarapi/{what}"
# Rails parses JSON bodies with Ruby's JSON.parse, whose default max_nesting is 100.
MAX_JSON_NESTING = 100
JSON_TOO_DEEP = f"nesting of {MAX_JSON_NESTING + 1} is too deep"


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def oar_relay(version: str, site: str, what: str, body: str, status: int = 400) -> ApiError:
    """An OAR refusal relayed the way g5k-api wraps its internal OAR API answers."""
    url = OAR_API.format(version=version, site=site, what=what)
    return ApiError(status, f"Request to {url} failed with status {status}: {body}")


def job_not_found(uid: object) -> ApiError:
    """g5k-api looking the job up in OAR's database (job GET and DELETE): ActiveRecord's message."""
    return ApiError(404, f"Couldn't find OAR::Job with 'job_id'={uid}")


def oar_job_not_found(uid: object) -> ApiError:
    """g5k-api asking OAR's REST API about the job (walltime GET and POST): its OarApi::NotFound message."""
    return ApiError(404, f"Job id '{uid}' cannot be found.")
