"""Authorization grants: which source's studies may be used for which purpose, until when.

A public-data authorization platform authorizes a hospital's (tenant's) imaging data for
specific purposes; PreRead binds every use of a study to such a grant:

* a study is read (clinical pre-read) only under a valid ``clinical-preread`` grant covering it,
  checked before any pixel is fetched (else its job ends ``not_authorized``);
* a report is served only for a purpose of use (the token's) that a valid grant covers;
* training data come only from studies under a valid ``model-training`` grant.

:mod:`.matching` decides coverage (pure); :class:`GrantStore` keeps grants in the database.
"""

from preread.grants.matching import StudyScope, coverage_problem, covers, first_covering
from preread.grants.purposes import Purpose
from preread.grants.records import Grant, GrantError, GrantNotFoundError, GrantSpec
from preread.grants.store import GrantStore

__all__ = [
    "Grant",
    "GrantError",
    "GrantNotFoundError",
    "GrantSpec",
    "GrantStore",
    "Purpose",
    "StudyScope",
    "coverage_problem",
    "covers",
    "first_covering",
]
