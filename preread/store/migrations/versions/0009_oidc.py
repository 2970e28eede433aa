"""OpenID Connect sign-in: people's identities at the provider, sign-ins in progress

``oidc_identities``: issuer + ``sub`` (what the provider never reassigns) → the account that
identity signs in to (an account without a local password, made on its first sign-in);
removing the account removes the link. ``oidc_logins``: a sign-in between PreRead's redirect to
the provider and the provider's redirect back, for minutes and used once: the SHA-256 of its
``state`` and of the browser's binding cookie, the ``nonce`` and the PKCE code verifier. See
:mod:`preread.oidc`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oidc_identities",
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("last_sign_in_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_oidc_identities_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("issuer", "subject", name="pk_oidc_identities"),
    )
    op.create_index("ix_oidc_identities_user_id", "oidc_identities", ["user_id"])
    op.create_table(
        "oidc_logins",
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("browser_hash", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("next_path", sa.Text(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("expires_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("state_hash", name="pk_oidc_logins"),
    )
    op.create_index("ix_oidc_logins_expires_at", "oidc_logins", ["expires_at"])


def downgrade() -> None:
    op.drop_table("oidc_logins")
    op.drop_table("oidc_identities")
