// One reader for the operator scripts' command lines: `--flag value`, `--flag=value` and
// bare switches, with the script's own error type so each keeps its usage messages.

/**
 * Walks `argv`, calling `onFlag(flag, value)` for each option; `value()` takes the option's
 * value (inline after `=` or the next argument) and throws `makeError` when there is none.
 * `onFlag` returns false for an option it does not know.
 */
export function readFlags(argv, onFlag, makeError) {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const value = () => {
      const v = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (v === undefined || v === '') throw makeError(`${flag} needs a value`);
      return v;
    };
    if (onFlag(flag, value) === false) throw makeError(`unknown option ${arg}`);
  }
}
