import { isAbsolute, join } from 'node:path';

export interface DatabasePathOptions {
  env: NodeJS.ProcessEnv;
  homedir: string;
}

/**
 * Where the thread database lives unless `--db` says otherwise: the user's data directory of the XDG Base
 * Directory specification, which ignores a relative $XDG_DATA_HOME (procmail and cron start from varying
 * directories, so a relative path would name a different file each time).
 */
export function defaultDatabasePath({ env, homedir }: DatabasePathOptions): string {
  const dataHome = env.XDG_DATA_HOME;
  const base = dataHome && isAbsolute(dataHome) ? dataHome : join(homedir, '.local', 'share');
  return join(base, 'mailbridge', 'threads.sqlite');
}
