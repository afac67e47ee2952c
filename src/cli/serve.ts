import { controlSocketPath } from '../authorise/control-socket.ts';
import { createAuthorisations } from '../authorise/front-ends.ts';
import { ConfigStore } from '../config/store.ts';
import { describeError, isMailbridgeError } from '../errors.ts';
import { createLogger, type LogFormat, type Logger } from '../log.ts';
import { MailProxy, type ReloadSummary } from '../mail-proxy.ts';
import { Metrics } from '../metrics.ts';
import { HostResolver } from '../net/resolve.ts';
import { TokenClient } from '../oauth/token-client.ts';
import { KeyDeriver } from '../tokens/key-derivation.ts';
import { TokenService } from '../tokens/token-service.ts';
import { AccountActivity } from '../web/activity.ts';
import { describeReload, openWebConsole, type WebConsole } from '../web/console.ts';
import { consoleObserver } from '../web/observer.ts';

export interface ServeFlags {
  configFile: string;
  cacheStore?: string;
  externalAuth?: boolean;
  localServerAuth?: boolean;
  logFile?: string;
  logFormat: string;
  debug?: boolean;
  webConsole?: string;
}

/** Exit codes: 0 stopped by a signal, 1 failed while running, 2 unusable configuration or flags. */
export const ExitCode = { OK: 0, RUNTIME: 1, CONFIG: 2 } as const;

export async function serve(flags: ServeFlags): Promise<number> {
  if (flags.logFormat !== 'text' && flags.logFormat !== 'json') {
    process.stderr.write(`mailbridge: --log-format must be text or json, not '${flags.logFormat}'\n`);
    return ExitCode.CONFIG;
  }
  const logger = createLogger({
    debug: flags.debug,
    file: flags.logFile,
    format: flags.logFormat as LogFormat,
  });
  let store: ConfigStore;
  try {
    store = await ConfigStore.load({ configPath: flags.configFile, cachePath: flags.cacheStore, logger });
  } catch (error: unknown) {
    logger.fatal(describeError(error));
    if (flags.logFile) process.stderr.write(`mailbridge: ${describeError(error)}\n`);
    return ExitCode.CONFIG;
  }
  logger.info(`mailbridge starting with configuration ${store.configPath}${flags.debug ? ' (debug)' : ''}`);
  const frontEnds = createAuthorisations({
    externalAuth: flags.externalAuth ?? false,
    localServerAuth: flags.localServerAuth ?? false,
    globals: store.globals(),
    logger,
  });
  const resolver = new HostResolver({ logger });
  const metrics = new Metrics();
  const activity = new AccountActivity();
  const observer = consoleObserver(metrics, activity);
  const tokens = new TokenService({
    store,
    deriver: new KeyDeriver(),
    tokenClient: new TokenClient(),
    authorisations: frontEnds.authorisations,
    logger,
    observer,
  });
  try {
    await frontEnds.openControlSocket(controlSocketPath(store.configPath), {
      token: (account) => tokens.unlockedAccessToken(account),
    });
  } catch (error: unknown) {
    logger.fatal(describeError(error));
    frontEnds.close();
    return ExitCode.RUNTIME;
  }
  const proxy = new MailProxy({ store, tokens, resolver, logger, observer });
  let web: WebConsole | undefined;
  // SIGHUP and the console's Reload button: the configuration, then the console's certificate (a renewal).
  const reload = async (): Promise<ReloadSummary> => {
    const summary = await proxy.reload();
    await web?.reloadCertificate().catch((error: unknown) => {
      logger.error(`web console: ${describeError(error)}; it keeps the certificate it had`);
    });
    return summary;
  };
  try {
    web = await openWebConsole({
      flag: flags.webConsole,
      store,
      authorisations: frontEnds.authorisations,
      authorise: (account, password) => tokens.accessToken(account, password).then(() => undefined),
      reload: () => reload().then(describeReload),
      addFrontEnd: frontEnds.add,
      metrics,
      activity,
      logger,
    });
  } catch (error: unknown) {
    logger.fatal(describeError(error));
    frontEnds.close();
    return ExitCode.CONFIG;
  }
  try {
    await proxy.start();
  } catch (error: unknown) {
    logger.fatal(describeError(error));
    frontEnds.close();
    return isMailbridgeError(error) ? ExitCode.CONFIG : ExitCode.RUNTIME;
  }
  const stopRefreshing = tokens.startBackgroundRefresh();
  // The signal handlers go in before anyone is told we are ready: a SIGTERM right after 'ready' must stop
  // mailbridge cleanly (tokens saved), not kill it.
  const stopped = untilStopped(proxy, store, logger, reload, () => {
    stopRefreshing();
    frontEnds.close();
  });
  logger.info('mailbridge ready: connect your email client to begin');
  return stopped;
}

/**
 * The daemon's signals: SIGTERM/SIGINT stop (no new connections, a goodbye per protocol, pending token saves
 * written, exit 0); SIGHUP reloads the configuration file (a file that does not load changes nothing) and
 * the web console's certificate;
 * SIGUSR1 toggles debug logging. A second SIGTERM/SIGINT while stopping ends the process at once.
 */
function untilStopped(
  proxy: MailProxy,
  store: ConfigStore,
  logger: Logger,
  reloadAll: () => Promise<ReloadSummary>,
  beforeStop: () => void,
): Promise<number> {
  return new Promise((resolve) => {
    const toggleDebug = () => {
      logger.level = logger.level === 'debug' ? 'info' : 'debug';
      logger.info(`debug logging ${logger.level === 'debug' ? 'on' : 'off'}`);
    };
    const reload = () => {
      logger.info(`received SIGHUP: reloading ${store.configPath}`);
      reloadAll().then(
        (summary) => {
          const list = (names: string[]) => (names.length > 0 ? ` (${names.join(', ')})` : '');
          const text =
            `configuration reloaded: ${summary.added.length} added${list(summary.added)}, ` +
            `${summary.removed.length} removed${list(summary.removed)}, ` +
            `${summary.changed.length} changed${list(summary.changed)}, ${summary.unchanged.length} unchanged`;
          if (summary.failed.length > 0)
            logger.error(`${text}; ${summary.failed.length} not listening${list(summary.failed)}`);
          else logger.info(text);
        },
        (error: unknown) => {
          logger.error(
            `configuration not reloaded, the running one stays in force: ${describeError(error)}; fix the file and send SIGHUP again`,
          );
        },
      );
    };
    const ignoreHangup = () => logger.info('received SIGHUP while stopping: ignored');
    const stop = (signal: NodeJS.Signals) => {
      logger.info(`received ${signal}: stopping`);
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      process.off('SIGHUP', reload);
      process.off('SIGUSR1', toggleDebug);
      // Without a handler SIGHUP would kill the process halfway through saving.
      process.on('SIGHUP', ignoreHangup);
      beforeStop();
      proxy
        .stop()
        .then(() => store.flush())
        .then(
          () => {
            logger.info('mailbridge stopped');
            resolve(ExitCode.OK);
          },
          (error: unknown) => {
            logger.error(`error while stopping: ${describeError(error)}`);
            resolve(ExitCode.RUNTIME);
          },
        )
        .finally(() => process.off('SIGHUP', ignoreHangup));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGUSR1', toggleDebug);
    process.on('SIGHUP', reload);
  });
}
