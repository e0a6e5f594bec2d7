/** Listeners of one kind of change: added, then called in order with each new value. */
export class Listeners<T> {
  private readonly list: ((value: T) => void)[] = [];

  add(listener: (value: T) => void): void {
    this.list.push(listener);
  }

  emit(value: T): void {
    for (const listener of this.list) listener(value);
  }
}
