// quis.sentinel.v1.SentinelService: alerts and incidents with pagination, a
// watch stream with a bounded wait, triage, and the break-glass review queue.
import type { Client } from "@connectrpc/connect";
import { items } from "./paginate.js";
import {
  ReviewState,
  SentinelService,
  TriageAction,
  type Alert,
  type ListAlertsRequest,
  type ListIncidentsRequest,
  type ListReviewsRequest,
  type WatchAlertsRequest,
} from "./gen/quis/sentinel/v1/sentinel_pb.js";

/** Request fields, without the message type tag. */
type Init<T> = Omit<Partial<T>, "$typeName" | "$unknown">;

export class SentinelClient {
  constructor(readonly raw: Client<typeof SentinelService>) {}

  listAlerts(req: Init<ListAlertsRequest> = {}) {
    return this.raw.listAlerts(req);
  }

  /** Every alert matching the filters, across pages. */
  alerts(req: Init<ListAlertsRequest> = {}) {
    return items((r: Init<ListAlertsRequest>) => this.raw.listAlerts(r), { ...req, pageToken: "" }, (p) => p.alerts);
  }

  getAlert(name: string) {
    return this.raw.getAlert({ name }).then((r) => r.alert!);
  }

  listIncidents(req: Init<ListIncidentsRequest> = {}) {
    return this.raw.listIncidents(req);
  }

  incidents(req: Init<ListIncidentsRequest> = {}) {
    return items((r: Init<ListIncidentsRequest>) => this.raw.listIncidents(r), { ...req, pageToken: "" }, (p) => p.incidents);
  }

  getIncident(name: string) {
    return this.raw.getIncident({ name }).then((r) => r.incident!);
  }

  /** New alerts as they are raised (replaying those after `after` first); abort with signal. */
  async *watchAlerts(req: Init<WatchAlertsRequest> = {}, signal?: AbortSignal): AsyncGenerator<Alert> {
    for await (const r of this.raw.watchAlerts(req, { signal })) if (r.alert) yield r.alert;
  }

  /** The first watched alert matching predicate within timeoutMs; rejects on timeout. The stream is closed either way. */
  async waitForAlert(predicate: (a: Alert) => boolean, timeoutMs: number, req: Init<WatchAlertsRequest> = {}): Promise<Alert> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    try {
      for await (const alert of this.watchAlerts(req, abort.signal)) if (predicate(alert)) return alert;
      throw new Error("the alert stream ended");
    } catch (e) {
      if (abort.signal.aborted) throw new Error(`no matching alert within ${timeoutMs} ms`);
      throw e;
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
  }

  triageAlert(name: string, action: TriageAction | keyof typeof TriageAction, note: string) {
    const value = typeof action === "number" ? action : TriageAction[action];
    return this.raw.triageAlert({ name, action: value, note }).then((r) => r.alert!);
  }

  /** One page of the break-glass review queue (oldest first), filtered by state and actor. */
  listReviews(req: Init<ListReviewsRequest> = {}) {
    return this.raw.listReviews(req);
  }

  /** Every review matching the filters, across pages. */
  reviews(req: Init<ListReviewsRequest> = {}) {
    return items((r: Init<ListReviewsRequest>) => this.raw.listReviews(r), { ...req, pageToken: "" }, (p) => p.reviews);
  }

  /** JUSTIFIED or UNJUSTIFIED, with a note (recorded in the ledger); resolves to the completed review. */
  completeReview(name: string, outcome: ReviewState | "JUSTIFIED" | "UNJUSTIFIED", note: string) {
    const value = typeof outcome === "number" ? outcome : ReviewState[outcome];
    return this.raw.completeReview({ name, outcome: value, note }).then((r) => r.review!);
  }

  /** Alerts per 1,000 staff-days, the share of accesses explained, the cursor, detection lag. */
  detectionStats() {
    return this.raw.getDetectionStats({});
  }

  /** Every detection with its severity, thresholds and whether it runs. */
  detections() {
    return this.raw.listDetections({}).then((r) => r.detections);
  }
}
