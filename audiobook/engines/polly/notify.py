"""Learning of finished Polly tasks from SNS notifications, through an SQS queue of our own.

    listener = NotificationListener(topic_arn, sqs=lambda: sqs, sns=lambda: sns)
    listener.ensure()                  # queue created, topic allowed to send, subscribed
    listener.track(task_id)            # a task we wait to hear about
    state = listener.known(task_id)    # TaskState from a notification, or None: ask Polly
    listener.heard(task_id, status)    # what GetSpeechSynthesisTask said
    listener.close()                   # unsubscribes and deletes the queue

A task with no notification for ``grace`` seconds is left to the caller to look up with
GetSpeechSynthesisTask (``known`` answers None), at most once per grace interval, so lost
notifications still complete. The queue is read without waiting (``known`` must not
block) and at most once per ``DRAIN_INTERVAL_S``, however many tasks are asked about.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import AudiobookError
from ...files import pid_alive
from ..base import TaskState
from .aws import _call, task_state

log = logging.getLogger(__name__)

# Seconds a task may go without an SNS notification before we ask GetSpeechSynthesisTask.
NOTIFICATION_GRACE_S = 60.0
# The SQS queue is read at most this often, however many tasks are polled.
DRAIN_INTERVAL_S = 0.2


# Our queues: ``audiobook-polly-<host>-<pid>-<random>`` (the run that made it), or
# ``audiobook-polly-<random>`` as earlier versions named them.
QUEUE_PREFIX = "audiobook-polly-"
_QUEUE_NAME = re.compile(r"^audiobook-polly-(?:(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-)?[0-9a-f]+$")
# A queue whose maker cannot be asked (another machine, an old name) is stale after this.
FOREIGN_QUEUE_MAX_AGE = 7 * 24 * 3600.0


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def queue_name() -> str:
    """A queue name that says which process on which machine made it."""
    return f"{QUEUE_PREFIX}{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def stale_queue(name: str, created: float, now: float) -> bool:
    """Whether our queue ``name`` (created at ``created``, epoch seconds) outlived the
    run that made it: its process is gone from this machine, or, made elsewhere (or
    named the old way), it is older than FOREIGN_QUEUE_MAX_AGE."""
    m = _QUEUE_NAME.match(name)
    if not m:
        return False
    if m["host"] == _host_tag() and m["pid"]:
        return not pid_alive(int(m["pid"]))
    return now - created > FOREIGN_QUEUE_MAX_AGE


def sweep_queues(sqs: Any, sns: Any, *, dry_run: bool = False) -> list[str]:
    """Delete the notification queues (and their SNS subscriptions) that killed runs
    left behind; returns their names. Queues of live runs are kept."""
    urls: list[str] = []
    kwargs: dict[str, Any] = {"QueueNamePrefix": QUEUE_PREFIX, "MaxResults": 1000}
    while True:
        resp = _call("SQS ListQueues", sqs.list_queues, **kwargs)
        urls += resp.get("QueueUrls", [])
        if not resp.get("NextToken"):
            break
        kwargs["NextToken"] = resp["NextToken"]
    now = time.time()
    stale: dict[str, tuple[str, str]] = {}  # queue ARN -> (name, url)
    for url in urls:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        attrs = _call(
            "SQS GetQueueAttributes",
            sqs.get_queue_attributes,
            QueueUrl=url,
            AttributeNames=["QueueArn", "CreatedTimestamp"],
        )["Attributes"]
        if stale_queue(name, float(attrs.get("CreatedTimestamp") or now), now):
            stale[attrs["QueueArn"]] = (name, url)
    if not stale or dry_run:
        return sorted(n for n, _ in stale.values())
    subs: list[str] = []
    kwargs = {}
    while True:
        resp = _call("SNS ListSubscriptions", sns.list_subscriptions, **kwargs)
        subs += [
            s["SubscriptionArn"]
            for s in resp.get("Subscriptions", [])
            if s.get("Endpoint") in stale and s.get("SubscriptionArn", "").startswith("arn:")
        ]
        if not resp.get("NextToken"):
            break
        kwargs = {"NextToken": resp["NextToken"]}
    for arn in subs:
        _call("SNS Unsubscribe", sns.unsubscribe, SubscriptionArn=arn)
    for _, url in stale.values():
        _call("SQS DeleteQueue", sqs.delete_queue, QueueUrl=url)
    return sorted(n for n, _ in stale.values())


def parse_notification(body: str) -> dict[str, str] | None:
    """A Polly completion message from an SQS body (an SNS envelope or a raw message):
    {"task_id", "status" (Polly's lower/camel case), "output_uri", "reason"} or None."""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return None
    if isinstance(data, dict) and "Message" in data and "taskId" not in data:
        try:
            data = json.loads(data["Message"])
        except (ValueError, TypeError):
            return None
    if not isinstance(data, dict) or "taskId" not in data:
        return None
    raw = str(data.get("taskStatus", "")).strip()
    status = {
        "COMPLETED": "completed",
        "FAILED": "failed",
        "SCHEDULED": "scheduled",
        "INPROGRESS": "inProgress",
        "IN_PROGRESS": "inProgress",
    }.get(raw.upper().replace(" ", ""), raw)
    reason = data.get("taskStatusReason") or data.get("reason") or data.get("errorMessage") or ""
    return {
        "task_id": str(data["taskId"]),
        "status": status,
        "output_uri": str(data.get("outputUri") or ""),
        "reason": str(reason),
    }


@dataclass
class _Pending:
    """What the listener knows about a task while it waits for its notification."""

    checked: float  # clock time of submit or of the last Get
    status: str = "scheduled"


class NotificationListener:
    """An SQS queue subscribed to one SNS topic, and what its messages said.

    ``sqs`` and ``sns`` are called for the clients when first needed, so that building a
    listener makes no client. Thread-safe."""

    def __init__(
        self,
        topic_arn: str,
        *,
        sqs: Callable[[], Any],
        sns: Callable[[], Any],
        grace: float = NOTIFICATION_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topic_arn = topic_arn
        self.grace = grace
        self._sqs, self._sns = sqs, sns
        self._clock = clock
        self._lock = threading.RLock()
        self.queue_url: str | None = None
        self.subscription_arn: str | None = None
        self._pending: dict[str, _Pending] = {}
        self._notified: dict[str, dict[str, str]] = {}
        self._drained = float("-inf")

    # -- queue and subscription ------------------------------------------------------

    def ensure(self) -> None:
        """Create the queue, let the topic send to it and subscribe it (once)."""
        with self._lock:
            if self.queue_url:
                return
            sqs = self._sqs()
            name = queue_name()
            url = _call("SQS CreateQueue", sqs.create_queue, QueueName=name)["QueueUrl"]
            self.queue_url = url
            try:
                attrs = _call(
                    "SQS GetQueueAttributes",
                    sqs.get_queue_attributes,
                    QueueUrl=url,
                    AttributeNames=["QueueArn"],
                )
                arn = attrs["Attributes"]["QueueArn"]
                policy = {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "PollyCompletionFromSns",
                            "Effect": "Allow",
                            "Principal": {"Service": "sns.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": arn,
                            "Condition": {"ArnEquals": {"aws:SourceArn": self.topic_arn}},
                        }
                    ],
                }
                _call(
                    "SQS SetQueueAttributes",
                    sqs.set_queue_attributes,
                    QueueUrl=url,
                    Attributes={"Policy": json.dumps(policy)},
                )
                sub = _call(
                    "SNS Subscribe",
                    self._sns().subscribe,
                    TopicArn=self.topic_arn,
                    Protocol="sqs",
                    Endpoint=arn,
                    ReturnSubscriptionArn=True,
                )
                self.subscription_arn = sub.get("SubscriptionArn")
            except BaseException:
                self.close()
                raise
            log.debug("listening for Polly notifications on %s", name)

    def close(self) -> None:
        """Unsubscribe and delete the queue; a failure is logged, not raised."""
        with self._lock:
            sub, url = self.subscription_arn, self.queue_url
            self.subscription_arn = self.queue_url = None
            if sub and sub != "PendingConfirmation":
                try:
                    _call("SNS Unsubscribe", self._sns().unsubscribe, SubscriptionArn=sub)
                except AudiobookError as e:
                    log.warning("could not unsubscribe %s: %s", sub, e)
            if url:
                try:
                    _call("SQS DeleteQueue", self._sqs().delete_queue, QueueUrl=url)
                except AudiobookError as e:
                    log.warning("could not delete queue %s: %s", url, e)

    def drain(self) -> None:
        """Read every waiting notification (no long poll: polling must not block), at
        most once per ``DRAIN_INTERVAL_S`` however many tasks are polled."""
        if not self.queue_url:
            return
        with self._lock:
            now = self._clock()
            if now - self._drained < DRAIN_INTERVAL_S:
                return
            self._drained = now
            url = self.queue_url
            sqs = self._sqs()
            for _ in range(100):  # at most 1,000 messages per poll
                resp = _call(
                    "SQS ReceiveMessage",
                    sqs.receive_message,
                    QueueUrl=url,
                    MaxNumberOfMessages=10,
                    WaitTimeSeconds=0,
                )
                messages = resp.get("Messages", [])
                if not messages:
                    return
                for msg in messages:
                    note = parse_notification(msg.get("Body", ""))
                    if note is not None and note["status"] in ("completed", "failed"):
                        self._notified[note["task_id"]] = note
                        self._pending.pop(note["task_id"], None)
                _call(
                    "SQS DeleteMessageBatch",
                    sqs.delete_message_batch,
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(messages)
                    ],
                )

    # -- what is known of each task --------------------------------------------------

    def track(self, task_id: str) -> None:
        """Wait to hear about ``task_id`` (from now on, for ``grace`` seconds)."""
        with self._lock:
            self._pending.setdefault(task_id, _Pending(checked=self._clock()))

    def known(self, task_id: str) -> TaskState | None:
        """Where ``task_id`` stands as far as notifications tell: its notified end, or
        its last known state while it is inside its grace time. None: ask Polly (and
        call ``heard`` with the answer); the grace time starts again now. A failure
        notified without a reason is None too: the reason is Polly's to tell."""
        self.drain()
        with self._lock:
            note = self._notified.get(task_id)
            pending = self._pending.get(task_id)
            now = self._clock()
            if note is None and pending is not None:
                if now - pending.checked < self.grace:
                    return task_state(pending.status, "", "")
                pending.checked = now  # the caller asks Polly once
        if note is not None:
            if note["status"] == "failed" and not note["reason"].strip():
                # The message says failed but not why (AWS documents no reason in it):
                # GetSpeechSynthesisTask's TaskStatusReason decides whether to retry.
                return None
            return task_state(note["status"], note["reason"], note["output_uri"])
        return None

    def heard(self, task_id: str, status: str) -> None:
        """What GetSpeechSynthesisTask said of ``task_id``: forget a finished task; wait
        for an unfinished one's notification (or the grace time) before asking again."""
        with self._lock:
            if status in ("completed", "failed"):
                self._pending.pop(task_id, None)
            else:
                entry = self._pending.setdefault(task_id, _Pending(checked=self._clock()))
                entry.status = status
