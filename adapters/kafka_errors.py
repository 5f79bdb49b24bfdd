"""Which Kafka errors are the record's fault, and which leave the producer unusable.

librdkafka reports a record's failure as a :class:`confluent_kafka.KafkaError` (in its
delivery report), or raises it wrapped in a :class:`confluent_kafka.KafkaException` when
``produce()`` refuses the record outright (too large, say).
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from adapters.base import Delivery

# Errors about one record that sending it again cannot fix: it is dead-lettered. Everything
# else (a broker down, a leader moving, a topic not known yet, a timeout, an error this list
# does not know) is transient, whatever the client's ``retriable()`` says: its message
# timeout, for one, is not flagged retriable, yet the next attempt may well succeed.
PERMANENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.TOPIC_EXCEPTION,  # an invalid topic name
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.INVALID_MSG,  # a corrupt record
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_TIMESTAMP,
        KafkaError.POLICY_VIOLATION,
        KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
    }
)

# Errors that leave the producer itself unusable (besides any error librdkafka flags fatal):
# the next batch starts on a new one, with a new producer id and sequence numbers.
PRODUCER_ERRORS = frozenset(
    {
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError._FATAL,
        KafkaError._FENCED,
        KafkaError._DESTROY,  # the producer was closed
    }
)


def kafka_error_of(error: BaseException | KafkaError) -> KafkaError | None:
    """The :class:`KafkaError` that ``error`` is or carries, if any."""
    if isinstance(error, KafkaError):
        return error
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        return error.args[0]
    return None


def describe(error: BaseException | KafkaError) -> str:
    """``error`` as a dead letter's or a log line's text: its name, then what it says."""
    kafka_error = kafka_error_of(error)
    if kafka_error is not None:
        return f"{kafka_error.name()}: {kafka_error.str()}"
    return f"{type(error).__name__}: {error}"


def delivery_for(error: BaseException | KafkaError) -> Delivery:
    """The outcome of a record whose send failed with ``error``."""
    kafka_error = kafka_error_of(error)
    if kafka_error is not None and kafka_error.code() in PERMANENT_ERRORS:
        return Delivery.permanent(describe(error))
    return Delivery.transient(describe(error))


def replaces_producer(error: BaseException | KafkaError | None) -> bool:
    """Whether a send that failed with ``error`` leaves the producer unusable, so that the next
    batch goes out on a new one."""
    kafka_error = kafka_error_of(error) if error is not None else None
    if kafka_error is None:
        return False
    return kafka_error.fatal() or kafka_error.code() in PRODUCER_ERRORS
