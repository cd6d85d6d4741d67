"""The one schema source (SQLAlchemy Core); Alembic migrations are generated from it.

Conventions, on every engine: timestamps are BIGINT epoch microseconds UTC (``*_at``),
money is BIGINT minor units of the row's currency (``*_minor``), JSON is stored as text.
Every row belongs to a store; natural keys are unique per store so imports can upsert.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-assigns rowids to INTEGER PRIMARY KEY; BIGINT elsewhere.
Id = BigInteger().with_variant(Integer(), "sqlite")


def _store_fk() -> Column[int]:
    return Column("store_id", Id, ForeignKey("stores.id"), nullable=False)


stores = Table(
    "stores",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("currency", String(3), nullable=False),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("created_at", BigInteger, nullable=False),
)

customers = Table(
    "customers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    # Identity rule (docs/data-model.md): normalised email when known, else the source's id.
    Column("external_id", String(320), nullable=False),
    Column("source_id", String(100)),
    Column("email", String(320)),
    Column("phone", String(32)),
    Column("first_name", String(200)),
    Column("last_name", String(200)),
    Column("city", String(200)),
    Column("region", String(200)),
    Column("country", String(2)),
    Column("zip", String(32)),
    Column("timezone", String(64)),
    Column("birthday", String(10)),
    Column("account_status", String(16), nullable=False),
    Column("tags", Text),
    Column("attributes", Text),
    Column("created_at", BigInteger),  # unknown for some exports
    UniqueConstraint("store_id", "external_id"),
    Index("ix_customers_store_email", "store_id", "email"),
    Index("ix_customers_store_source", "store_id", "source_id"),
)

consents = Table(
    "consents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", String(64), nullable=False),
    Column("text_version", String(64)),
    Column("occurred_at", BigInteger, nullable=False),
    Index("ix_consents_customer_channel", "customer_id", "channel", "occurred_at"),
)

products = Table(
    "products",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("sku", String(200), nullable=False),
    Column("name", String(500)),
    Column("category", String(200)),
    Column("price_minor", BigInteger),
    Column("currency", String(3)),
    Column("lifespan_days", BigInteger),
    Column("attributes", Text),
    UniqueConstraint("store_id", "sku"),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("external_id", String(100), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id")),
    Column("email", String(320)),
    Column("placed_at", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("subtotal_minor", BigInteger, nullable=False),
    Column("discount_minor", BigInteger, nullable=False),
    Column("shipping_minor", BigInteger, nullable=False),
    Column("tax_minor", BigInteger, nullable=False),
    Column("total_minor", BigInteger, nullable=False),
    Column("refunded_minor", BigInteger, nullable=False),
    Column("status", String(24), nullable=False),
    Column("cancelled_at", BigInteger),
    Column("discount_code", String(200)),
    Column("channel", String(16), nullable=False),
    Column("source", String(32), nullable=False),
    # Digest of the order's header and lines: lets an import tell "unchanged" cheaply.
    Column("digest", String(48), nullable=False),
    UniqueConstraint("store_id", "external_id"),
    Index("ix_orders_store_customer_placed", "store_id", "customer_id", "placed_at"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", Id, ForeignKey("orders.id"), primary_key=True),
    Column("line_no", BigInteger, primary_key=True),
    _store_fk(),
    Column("sku", String(200)),
    Column("name", String(500)),
    Column("category", String(200)),
    Column("quantity", BigInteger, nullable=False),
    Column("unit_price_minor", BigInteger, nullable=False),
    Column("discount_minor", BigInteger, nullable=False),
    sqlite_with_rowid=False,  # one B-tree keyed (order_id, line_no): faster bulk appends
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("customer_id", Id, ForeignKey("customers.id")),
    Column("anonymous_id", String(200)),
    Column("type", String(64), nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    Column("properties", Text),
    Column("dedupe_key", String(200), nullable=False),
    UniqueConstraint("store_id", "dedupe_key"),
    Index("ix_events_store_type_occurred", "store_id", "type", "occurred_at"),
    Index("ix_events_customer", "customer_id", "occurred_at"),
)

# Per-customer CLV predictions, one row per (store, customer, model); a re-fit replaces a
# store+model's rows in one transaction (docs/clv.md).
customer_predictions = Table(
    "customer_predictions",
    metadata,
    Column("store_id", Id, ForeignKey("stores.id"), primary_key=True),
    Column("customer_id", Id, ForeignKey("customers.id"), primary_key=True),
    Column("model", String(16), primary_key=True),
    Column("model_version", String(32), nullable=False),
    Column("fitted_at", BigInteger, nullable=False),
    Column("inputs_through", BigInteger, nullable=False),  # calibration end (exclusive), micros
    Column("p_alive", Float, nullable=False),
    Column("horizon_days", BigInteger, nullable=False),
    Column("expected_purchases", Float, nullable=False),
    Column("expected_purchases_low", Float),
    Column("expected_purchases_high", Float),
    Column("next_order_at", BigInteger),
    Column("clv_minor", BigInteger, nullable=False),
    Column("clv_low_minor", BigInteger),
    Column("clv_high_minor", BigInteger),
    Column("currency", String(3), nullable=False),
    Column("risk_band", String(8), nullable=False),
    Index("ix_customer_predictions_store_model_risk", "store_id", "model", "risk_band"),
)

# -- segments (docs/segments.md) ----------------------------------------------------------------

segments = Table(
    "segments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("name", String(100), nullable=False),
    Column("title", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("kind", String(16), nullable=False),  # builtin | rfm | rule
    Column("definition", Text, nullable=False),  # JSON: the validated rule as plain data
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("store_id", "name"),
)

# One row per stay in a segment: open while exited_at is NULL (at most one open row per
# segment and customer, enforced by a partial unique index on both engines).
segment_memberships = Table(
    "segment_memberships",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("segment_id", Id, ForeignKey("segments.id"), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("entered_at", BigInteger, nullable=False),
    Column("exited_at", BigInteger),
    Index(
        "ux_segment_memberships_open",
        "segment_id",
        "customer_id",
        unique=True,
        sqlite_where=text("exited_at IS NULL"),
        postgresql_where=text("exited_at IS NULL"),
    ),
    Index("ix_segment_memberships_customer", "customer_id", "segment_id"),
)

# Entered/exited events campaigns consume in id order (the id is their cursor).
segment_events = Table(
    "segment_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("segment_id", Id, ForeignKey("segments.id"), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("type", String(8), nullable=False),  # entered | exited
    Column("occurred_at", BigInteger, nullable=False),
    Column("origin", String(8), nullable=False),  # refresh | live
    Index("ix_segment_events_store_id", "store_id", "id"),
    Index("ix_segment_events_customer", "customer_id", "segment_id"),
)

# Each full refresh: when it evaluated, what it wrote, and the store-wide thresholds (RFM
# score cuts, top-x% cuts) that live re-evaluation reuses until the next refresh.
segment_refreshes = Table(
    "segment_refreshes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("as_of", BigInteger, nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=False),
    Column("segments", BigInteger, nullable=False),
    Column("entered", BigInteger, nullable=False),
    Column("exited", BigInteger, nullable=False),
    Column("reference", Text, nullable=False),
    Index("ix_segment_refreshes_store", "store_id", "id"),
)

# -- loyalty (docs/loyalty.md) ---------------------------------------------------------------

# One program per store: earn rules, rewards, tiers, expiry, as validated JSON.
loyalty_programs = Table(
    "loyalty_programs",
    metadata,
    Column("store_id", Id, ForeignKey("stores.id"), primary_key=True),
    Column("config", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Ledger accounts: a customer's points / pending points / store credit, and the program's
# counter-accounts (issued, redeemed, expired, clawed_back, adjusted). ``balance`` is the
# sum of the account's entries, kept in the same transaction as the entries.
loyalty_accounts = Table(
    "loyalty_accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("customer_id", Id, ForeignKey("customers.id")),  # null: a program account
    Column("kind", String(16), nullable=False),
    Column("unit", String(8), nullable=False),  # PTS, or the store-credit currency
    Column("account_key", String(80), nullable=False),
    Column("balance", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("store_id", "account_key"),
    Index("ix_loyalty_accounts_customer", "store_id", "customer_id"),
)

# One row per ledger transaction: the idempotency key, a hash of the request it was made
# for, the stored result, and who did it and why (the audit trail).
loyalty_transactions = Table(
    "loyalty_transactions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("idempotency_key", String(200), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id")),
    Column("order_ref", String(100)),
    Column("reason", Text, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    Column("result", Text, nullable=False),
    UniqueConstraint("store_id", "idempotency_key"),
    Index("ix_loyalty_transactions_customer", "store_id", "customer_id", "id"),
    Index("ix_loyalty_transactions_order", "store_id", "order_ref"),
)

# Points are earned in lots; spending consumes lots (soonest-expiring, then oldest first).
loyalty_lots = Table(
    "loyalty_lots",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("account_id", Id, ForeignKey("loyalty_accounts.id"), nullable=False),
    Column("transaction_id", Id, ForeignKey("loyalty_transactions.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("remaining", BigInteger, nullable=False),
    Column("expires_at", BigInteger),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_loyalty_lots_account", "account_id", "remaining"),
)

# Append-only entries; the entries of one transaction sum to zero.
loyalty_entries = Table(
    "loyalty_entries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("transaction_id", Id, ForeignKey("loyalty_transactions.id"), nullable=False),
    Column("account_id", Id, ForeignKey("loyalty_accounts.id"), nullable=False),
    Column("lot_id", Id, ForeignKey("loyalty_lots.id")),
    Column("amount", BigInteger, nullable=False),
    Index("ix_loyalty_entries_account", "account_id", "id"),
    Index("ix_loyalty_entries_transaction", "transaction_id"),
)

# Events campaigns consume (points earned, reward redeemed, tier changed, points expiring).
loyalty_events = Table(
    "loyalty_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("customer_id", Id, ForeignKey("customers.id")),
    Column("type", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("dedupe_key", String(200), nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    UniqueConstraint("store_id", "dedupe_key"),
)

# Coupons: codes with >= 60 bits of entropy; uses counted under a row lock.
coupons = Table(
    "coupons",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("code", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("value", BigInteger, nullable=False),  # minor units, or basis points for percent
    Column("currency", String(3)),
    Column("customer_id", Id, ForeignKey("customers.id")),
    Column("max_uses", BigInteger, nullable=False),
    Column("uses", BigInteger, nullable=False),
    Column("per_customer", BigInteger),
    Column("expires_at", BigInteger),
    Column("source", String(100), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("store_id", "code"),
    Index("ix_coupons_source", "store_id", "source"),
)

coupon_redemptions = Table(
    "coupon_redemptions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("coupon_id", Id, ForeignKey("coupons.id"), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id")),
    Column("idempotency_key", String(200), nullable=False),
    Column("order_ref", String(100)),
    Column("occurred_at", BigInteger, nullable=False),
    UniqueConstraint("coupon_id", "idempotency_key"),
)

# A customer's place in the program: current tier (upgrades at once; downgrades only at
# ``review_at``); tier changes are also written as `tier_changed` loyalty events.
loyalty_members = Table(
    "loyalty_members",
    metadata,
    Column("store_id", Id, ForeignKey("stores.id"), primary_key=True),
    Column("customer_id", Id, ForeignKey("customers.id"), primary_key=True),
    Column("tier", String(64)),
    Column("since", BigInteger, nullable=False),
    Column("review_at", BigInteger, nullable=False),
)

# -- referrals -------------------------------------------------------------------------------

# One share code per referring customer (>= 60 bits, Crockford base32, like coupons).
referral_codes = Table(
    "referral_codes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("code", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("store_id", "code"),
    UniqueConstraint("store_id", "customer_id"),
)

# The top of the funnel: shares (per channel) and clicks on a share link, deduplicated.
referral_activity = Table(
    "referral_activity",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("code_id", Id, ForeignKey("referral_codes.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # share | click
    Column("channel", String(16)),
    Column("dedupe_key", String(200), nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    UniqueConstraint("store_id", "dedupe_key"),
    Index("ix_referral_activity_code", "code_id", "kind"),
)

# A friend who signed up with a code: one referral per friend. Status: signed_up ->
# ordered (first qualifying order seen, waiting for the refund window) -> rewarded; or
# flagged (held for review) -> approved / rejected; or void (the order was refunded).
referrals = Table(
    "referrals",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("code_id", Id, ForeignKey("referral_codes.id"), nullable=False),
    Column("referrer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("friend_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("flags", Text, nullable=False),  # JSON list of fraud reasons
    Column("order_ref", String(100)),
    Column("qualifies_at", BigInteger),
    Column("rewards", Text, nullable=False),  # JSON: what was paid (coupon codes, points)
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("decided_by", String(100)),
    UniqueConstraint("store_id", "friend_id"),
    Index("ix_referrals_referrer", "store_id", "referrer_id"),
    Index("ix_referrals_status", "store_id", "status", "qualifies_at"),
)

# Hashed identity signals (normalised email, phone, shipping address, payment fingerprint,
# device) seen for a customer, for self-referral checks; only hashes are kept.
customer_fingerprints = Table(
    "customer_fingerprints",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("value_hash", String(64), nullable=False),
    Column("seen_at", BigInteger, nullable=False),
    UniqueConstraint("store_id", "customer_id", "kind", "value_hash"),
    Index("ix_customer_fingerprints_value", "store_id", "kind", "value_hash"),
)

# -- paid memberships ------------------------------------------------------------------------

membership_plans = Table(
    "membership_plans",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("key", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("interval", String(8), nullable=False),  # month | year
    Column("fee_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("trial_days", BigInteger, nullable=False),
    Column("grace_days", BigInteger, nullable=False),
    Column("benefits", Text, nullable=False),  # JSON, validated by the plan model
    Column("active", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("store_id", "key"),
)

# A customer's membership: trial -> active -> past_due -> cancelled | expired.
memberships = Table(
    "memberships",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("plan_id", Id, ForeignKey("membership_plans.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("trial_ends_at", BigInteger),
    Column("period_start", BigInteger, nullable=False),
    Column("period_end", BigInteger, nullable=False),
    Column("cancel_at_period_end", Integer, nullable=False),
    Column("ended_at", BigInteger),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_memberships_customer", "store_id", "customer_id"),
    Index("ix_memberships_due", "store_id", "status", "period_end"),
)

# Fees charged (or failed) per period; the idempotency key makes a replayed payment
# notice a no-op.
membership_payments = Table(
    "membership_payments",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("membership_id", Id, ForeignKey("memberships.id"), nullable=False),
    Column("period_start", BigInteger, nullable=False),
    Column("period_end", BigInteger, nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(8), nullable=False),  # paid | failed | refunded
    Column("idempotency_key", String(200), nullable=False),
    Column("occurred_at", BigInteger, nullable=False),
    UniqueConstraint("store_id", "idempotency_key"),
    Index("ix_membership_payments_membership", "membership_id"),
)

# -- campaigns -------------------------------------------------------------------------------

# A store's flows (validated definitions, versioned on change).
flows = Table(
    "flows",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("name", String(64), nullable=False),
    Column("definition", Text, nullable=False),  # JSON of the validated flow
    Column("version", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),  # active | paused
    Column("cursor_at", BigInteger),  # triggers seen up to here (exclusive)
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("store_id", "name"),
)

# One customer's way through one flow (one per entry: ``entry_key`` names what let them in).
flow_runs = Table(
    "flow_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("flow_id", Id, ForeignKey("flows.id"), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("entry_key", String(200), nullable=False),
    Column("status", String(8), nullable=False),  # active | done | exited
    Column("holdout", Integer, nullable=False),
    Column("step_id", String(64), nullable=False),  # the next step to run
    Column("due_at", BigInteger, nullable=False),
    Column("entered_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),  # bumped by every advance (optimistic)
    Column("exit_reason", String(200)),
    Column("context", Text, nullable=False),  # JSON: trigger facts, variants, coupons
    UniqueConstraint("flow_id", "customer_id", "entry_key"),
    Index("ix_flow_runs_due", "store_id", "status", "due_at"),
    Index("ix_flow_runs_customer", "store_id", "customer_id"),
)

# Every message is one row, unique by (flow run, step); the dispatcher claims rows.
# Status: queued -> sending -> sent | failed | in_doubt; or skipped (with the reason).
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("message_key", String(200), nullable=False),
    Column("flow_id", Id, ForeignKey("flows.id")),
    Column("run_id", Id, ForeignKey("flow_runs.id")),
    Column("step_id", String(64)),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("template", String(200), nullable=False),
    Column("transactional", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("holdout", Integer, nullable=False),
    Column("status", String(8), nullable=False),
    Column("reason", String(200)),
    Column("not_before", BigInteger, nullable=False),
    Column("expires_at", BigInteger),
    Column("attempts", Integer, nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_at", BigInteger),
    Column("sent_at", BigInteger),
    Column("provider_id", String(200)),
    Column("context", Text, nullable=False),  # JSON for the template (coupon codes, variant)
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    UniqueConstraint("store_id", "message_key"),
    Index("ix_outbox_ready", "store_id", "status", "not_before"),
    Index("ix_outbox_customer", "store_id", "customer_id", "channel", "sent_at"),
)

# The arbiter's gate: the last marketing send per customer and channel, moved with a
# conditional UPDATE so two workers can never both take a customer's capped slot.
contact_slots = Table(
    "contact_slots",
    metadata,
    Column("store_id", Id, ForeignKey("stores.id"), primary_key=True),
    Column("customer_id", Id, ForeignKey("customers.id"), primary_key=True),
    Column("channel", String(8), primary_key=True),
    Column("last_marketing_at", BigInteger),
)

# Opens, clicks, unsubscribes, bounces of a message (signed tokens carry the outbox id).
message_events = Table(
    "message_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("outbox_id", Id, ForeignKey("outbox.id"), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("type", String(16), nullable=False),  # open | click | unsubscribe | bounce
    Column("url", Text),
    Column("occurred_at", BigInteger, nullable=False),
    Index("ix_message_events_outbox", "outbox_id", "type"),
    Index("ix_message_events_customer", "store_id", "customer_id", "occurred_at"),
)

# Work for people: "send a handwritten note and gift to this VIP".
staff_tasks = Table(
    "staff_tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _store_fk(),
    Column("run_id", Id, ForeignKey("flow_runs.id")),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False),
    Column("task_key", String(200), nullable=False),
    Column("title", String(500), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(8), nullable=False),  # open | done
    Column("created_at", BigInteger, nullable=False),
    Column("done_at", BigInteger),
    UniqueConstraint("store_id", "task_key"),
)

# Per-store campaign settings (caps, quiet hours, sender, unsubscribe base URL) as JSON.
campaign_settings = Table(
    "campaign_settings",
    metadata,
    Column("store_id", Id, ForeignKey("stores.id"), primary_key=True),
    Column("config", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)
