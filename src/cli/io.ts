/**
 * What a command may touch of the outside world, so tests can run commands in-process
 * and read what they printed.
 */
export interface CommandIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export const processIO: CommandIO = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** Exit codes shared by every command. */
export const EXIT_OK = 0;
/** Some input was bad (an invalid image, invalid rules for `validate`). */
export const EXIT_INVALID_INPUT = 1;
/** Wrong arguments or unusable rules. */
export const EXIT_USAGE = 2;
