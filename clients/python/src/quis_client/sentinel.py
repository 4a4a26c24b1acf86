"""quis.sentinel.v1.SentinelService: alerts, incidents, reviews, a watch stream and triage."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

from quis.sentinel.v1 import sentinel_pb2 as pb

SERVICE = "quis.sentinel.v1.SentinelService"


def _enum(enum, prefix: str, value) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    name = str(value).upper()
    return enum.Value(name if name.startswith(prefix) else prefix + name)


def severity(value) -> int:
    """`HIGH`, `SEVERITY_HIGH` or the number."""
    return _enum(pb.Severity, "SEVERITY_", value)


class SentinelClient:
    """Typed calls of sentinel (investigators). Keyword arguments `timeout` and `metadata` pass through."""

    def __init__(self, client):
        self._svc = client.service(SERVICE)

    def list_alerts(self, *, page_size=0, page_token="", detection_id="", min_severity=None, state=None, actor="",
                    incident="", **kw) -> pb.ListAlertsResponse:
        req = pb.ListAlertsRequest(
            page_size=page_size, page_token=page_token, detection_id=detection_id, min_severity=severity(min_severity),
            state=_enum(pb.AlertState, "ALERT_STATE_", state), actor=actor, incident=incident,
        )
        return self._svc.ListAlerts(req, **kw)

    def iter_alerts(self, *, page_size=0, **filters) -> Iterator[pb.Alert]:
        """Every alert matching the filters, across pages."""
        token = ""
        while True:
            page = self.list_alerts(page_size=page_size, page_token=token, **filters)
            yield from page.alerts
            token = page.next_page_token
            if not token:
                return

    def get_alert(self, name: str, **kw) -> pb.Alert:
        return self._svc.GetAlert(pb.GetAlertRequest(name=name), **kw).alert

    def list_incidents(self, *, page_size=0, page_token="", actor="", min_severity=None, **kw):
        req = pb.ListIncidentsRequest(
            page_size=page_size, page_token=page_token, actor=actor, min_severity=severity(min_severity)
        )
        return self._svc.ListIncidents(req, **kw)

    def iter_incidents(self, *, page_size=0, **filters) -> Iterator[pb.Incident]:
        token = ""
        while True:
            page = self.list_incidents(page_size=page_size, page_token=token, **filters)
            yield from page.incidents
            token = page.next_page_token
            if not token:
                return

    def get_incident(self, name: str, **kw) -> pb.Incident:
        return self._svc.GetIncident(pb.GetIncidentRequest(name=name), **kw).incident

    def watch_alerts(self, *, after: str = "", min_severity=None, **kw):
        """A stream of alerts (the Alert messages), from after alert `after` on; `cancel()` to stop."""
        req = pb.WatchAlertsRequest(after=after, min_severity=severity(min_severity))
        return self._svc.WatchAlerts(req, **kw).map(lambda r: r.alert)

    def wait_for_alert(self, predicate, *, timeout: float, after: str = "", min_severity=None) -> pb.Alert:
        """The first watched alert for which `predicate(alert)` holds, within `timeout` seconds,
        else TimeoutError. The stream is cancelled either way."""
        stream = self.watch_alerts(after=after, min_severity=min_severity, timeout=timeout)
        found: queue.Queue = queue.Queue()

        def pump():
            try:
                for alert in stream:
                    if predicate(alert):
                        found.put(alert)
                        return
            except Exception as e:  # the deadline, or a failure: reported below
                found.put(e)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        try:
            got = found.get(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        except queue.Empty:
            raise TimeoutError(f"no matching alert within {timeout}s") from None
        finally:
            stream.cancel()
        if isinstance(got, Exception):
            raise TimeoutError(f"no matching alert within {timeout}s: {got}") from got
        return got

    def triage_alert(self, name: str, action, note: str = "", **kw) -> pb.Alert:
        """ACKNOWLEDGE, RESOLVE or FALSE_POSITIVE, with a note (recorded in the ledger)."""
        req = pb.TriageAlertRequest(name=name, action=_enum(pb.TriageAction, "TRIAGE_ACTION_", action), note=note)
        return self._svc.TriageAlert(req, **kw).alert

    def list_reviews(self, *, page_size=0, page_token="", state=None, actor="", **kw):
        req = pb.ListReviewsRequest(
            page_size=page_size, page_token=page_token, state=_enum(pb.ReviewState, "REVIEW_STATE_", state), actor=actor
        )
        return self._svc.ListReviews(req, **kw)

    def iter_reviews(self, *, page_size=0, **filters) -> Iterator[pb.Review]:
        """Every review of the break-glass queue matching the filters (`state`, `actor`), oldest first."""
        token = ""
        while True:
            page = self.list_reviews(page_size=page_size, page_token=token, **filters)
            yield from page.reviews
            token = page.next_page_token
            if not token:
                return

    def complete_review(self, name: str, outcome, note: str = "", **kw):
        """JUSTIFIED or UNJUSTIFIED, with a note (recorded in the ledger); returns the completed Review."""
        req = pb.CompleteReviewRequest(name=name, outcome=_enum(pb.ReviewState, "REVIEW_STATE_", outcome), note=note)
        return self._svc.CompleteReview(req, **kw).review

    def get_detection_stats(self, **kw):
        return self._svc.GetDetectionStats(pb.GetDetectionStatsRequest(), **kw)

    def list_detections(self, **kw):
        return self._svc.ListDetections(pb.ListDetectionsRequest(), **kw).detections
