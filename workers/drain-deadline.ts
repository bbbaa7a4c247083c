// The timing of a drain (SIGTERM, `GatewayHandle.stop`), shared by the primary and the workers.

/**
 * After the drain deadline a worker ends its remaining sessions and waits up to this long for
 * their ends (each one's close record and summary) before it reports itself drained: the
 * pump-end callback runs on a later turn of the loop, after the last bytes went out.
 */
export const DRAIN_SHUTDOWN_GRACE_MS = 1000;
/** How often a draining worker looks at its live sessions. */
export const DRAIN_POLL_MS = 20;
/** The primary waits this much past the deadline and the grace for 'drained' before it stops a worker anyway. */
export const DRAIN_REPORT_MARGIN_MS = 1000;
