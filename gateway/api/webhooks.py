"""``POST /webhooks/payments``: a payment provider's signed notifications.

Not behind the API key: the provider does not hold one. The signature over the raw body
(``gateway.payments.signature``) authenticates it, and is checked before the body is parsed.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict

from gateway.api.problems import Problem, malformed_json, validation_problem
from gateway.api.routes import UsesGateway, problem_responses, require_json
from gateway.configuration.settings import Settings
from gateway.errors import FieldError
from gateway.payments.decision import PaymentOutcome
from gateway.payments.notification import PaymentNotification
from gateway.payments.signature import SIGNATURE_HEADER, SignatureRejected, verify
from gateway.write_path.models import Order

webhooks = APIRouter(dependencies=[Depends(require_json)], tags=["payments"])


class PaymentReceipt(BaseModel):
    """What the notification did; the same on every redelivery of one payment id."""

    model_config = ConfigDict(frozen=True)

    payment_id: str
    outcome: PaymentOutcome
    replayed: bool
    """True when this payment id had been recorded before: nothing was written now."""
    order: Order
    """The order as it is now."""


@webhooks.post(
    "/webhooks/payments",
    response_model=PaymentReceipt,
    responses={
        **problem_responses(400, 413, 415, 422, 503),
        401: {"description": "The signature is missing, stale, or matches no configured secret"},
        404: {"description": "Payment webhooks are off (no payments.webhook_secret)"},
        409: {"description": "The payment id was recorded with other content"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PaymentNotification"}}
            },
        }
    },
)
async def payment_notification(
    request: Request,
    gateway: UsesGateway,
    signature: Annotated[
        str | None,
        Header(
            alias=SIGNATURE_HEADER,
            description="t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + body>",
        ),
    ] = None,
) -> PaymentReceipt:
    """Record a payment notification: 200 with what it did, the same for a redelivery."""
    settings: Settings = request.app.state.settings
    secrets = [secret.get_secret_value() for secret in settings.payments.webhook_secret]
    if not secrets:
        raise Problem(
            404,
            "not-found",
            "Not found",
            "payment webhooks are off: set payments.webhook_secret to turn them on",
        )
    body = await request.body()
    try:
        verify(signature, body, secrets, time.time(), settings.payments.tolerance_seconds)
    except SignatureRejected as rejected:
        raise Problem(
            401,
            "invalid-signature",
            "Invalid signature",
            str(rejected),
            extra={"field": SIGNATURE_HEADER},
        ) from None
    recorded = await gateway.record_payment(_json_object(body))
    return PaymentReceipt(
        payment_id=recorded.payment_id,
        outcome=recorded.outcome,
        replayed=recorded.replayed,
        order=recorded.order,
    )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise malformed_json() from None
    if not isinstance(data, dict):
        raise validation_problem([FieldError("(body)", "must be a JSON object")])
    return data


def notification_schema() -> dict[str, Any]:
    """The JSON schema of a notification, for the OpenAPI document."""
    return PaymentNotification.model_json_schema(ref_template="#/components/schemas/{model}")
