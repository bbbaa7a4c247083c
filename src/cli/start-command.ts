// `vecgate start --config FILE`: loads and validates the config, starts the gateway, logs
// one `"msg":"ready"` line once every listener accepts.
import { loadConfig } from '../config/load.js';
import { startGateway } from '../gateway/gateway.js';
import { createLogger } from '../log.js';

export async function runStart(opts: { configPath: string }): Promise<void> {
  const config = await loadConfig(opts.configPath);
  const logger = createLogger();
  const gw = await startGateway(config, { logger, signals: true });
  logger.info({ listeners: gw.listeners, workers: config.server.workers, config: config.configPath }, 'ready');
}
