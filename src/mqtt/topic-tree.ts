/**
 * Tries over topic levels: one for subscriptions (filters stored, topics looked up) and one for
 * retained messages (topics stored, filters looked up). Lookups cost the depth of the topic, not
 * the number of subscriptions or retained messages.
 */

interface FilterNode<S, E> {
  children: Map<string, FilterNode<S, E>>;
  subs?: Map<S, E>;
}

/** Subscriptions of one tenant: filter -> subscriber -> entry. */
export class SubscriptionTree<S, E> {
  private readonly root: FilterNode<S, E> = { children: new Map() };
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds or replaces the subscriber's entry for `filter`; true when it is new. */
  add(filter: string, subscriber: S, entry: E): boolean {
    let node = this.root;
    for (const level of filter.split('/')) {
      let next = node.children.get(level);
      if (!next) {
        next = { children: new Map() };
        node.children.set(level, next);
      }
      node = next;
    }
    node.subs ??= new Map();
    const isNew = !node.subs.has(subscriber);
    node.subs.set(subscriber, entry);
    if (isNew) this.count++;
    return isNew;
  }

  /** True when the subscriber had `filter`. */
  remove(filter: string, subscriber: S): boolean {
    const path: Array<[FilterNode<S, E>, string]> = [];
    let node: FilterNode<S, E> | undefined = this.root;
    for (const level of filter.split('/')) {
      const next: FilterNode<S, E> | undefined = node.children.get(level);
      if (!next) return false;
      path.push([node, level]);
      node = next;
    }
    if (!node.subs?.delete(subscriber)) return false;
    this.count--;
    if (node.subs.size === 0) node.subs = undefined;
    // Prune empty branches so churn of one-off filters does not grow the tree.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, level] = path[i]!;
      const child = parent.children.get(level)!;
      if (child.subs || child.children.size) break;
      parent.children.delete(level);
    }
    return true;
  }

  /** Calls `visit` for every (subscriber, entry) whose filter matches the topic name. */
  match(topic: string, visit: (subscriber: S, entry: E) => void): void {
    const levels = topic.split('/');
    const dollar = topic.startsWith('$');
    const walk = (node: FilterNode<S, E>, i: number): void => {
      // Wildcards at the first level do not match `$` topics (MQTT 4.7.2).
      const wildOk = !(i === 0 && dollar);
      if (wildOk) {
        const hash = node.children.get('#');
        if (hash?.subs) for (const [s, e] of hash.subs) visit(s, e);
      }
      if (i === levels.length) {
        if (node.subs) for (const [s, e] of node.subs) visit(s, e);
        return;
      }
      const literal = node.children.get(levels[i]!);
      if (literal) walk(literal, i + 1);
      if (wildOk) {
        const plus = node.children.get('+');
        if (plus) walk(plus, i + 1);
      }
    };
    walk(this.root, 0);
  }
}

interface ValueNode<V> {
  children: Map<string, ValueNode<V>>;
  value?: V;
}

/** Retained messages of one tenant: one value per topic name. */
export class RetainedTree<V> {
  private readonly root: ValueNode<V> = { children: new Map() };
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(topic: string): V | undefined {
    let node: ValueNode<V> | undefined = this.root;
    for (const level of topic.split('/')) {
      node = node.children.get(level);
      if (!node) return undefined;
    }
    return node.value;
  }

  set(topic: string, value: V): void {
    let node = this.root;
    for (const level of topic.split('/')) {
      let next = node.children.get(level);
      if (!next) {
        next = { children: new Map() };
        node.children.set(level, next);
      }
      node = next;
    }
    if (node.value === undefined) this.count++;
    node.value = value;
  }

  delete(topic: string): boolean {
    const path: Array<[ValueNode<V>, string]> = [];
    let node: ValueNode<V> | undefined = this.root;
    for (const level of topic.split('/')) {
      const next: ValueNode<V> | undefined = node.children.get(level);
      if (!next) return false;
      path.push([node, level]);
      node = next;
    }
    if (node.value === undefined) return false;
    node.value = undefined;
    this.count--;
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, level] = path[i]!;
      const child = parent.children.get(level)!;
      if (child.value !== undefined || child.children.size) break;
      parent.children.delete(level);
    }
    return true;
  }

  /** Every retained value, `$` topics included. */
  forEach(visit: (value: V) => void): void {
    const all = (node: ValueNode<V>): void => {
      if (node.value !== undefined) visit(node.value);
      for (const child of node.children.values()) all(child);
    };
    all(this.root);
  }

  /** Every retained value whose topic matches `filter`. */
  match(filter: string, visit: (value: V) => void): void {
    const levels = filter.split('/');
    const all = (node: ValueNode<V>): void => {
      if (node.value !== undefined) visit(node.value);
      for (const child of node.children.values()) all(child);
    };
    const walk = (node: ValueNode<V>, i: number): void => {
      if (i === levels.length) {
        if (node.value !== undefined) visit(node.value);
        return;
      }
      const level = levels[i]!;
      if (level === '#') {
        // `a/#` matches `a` too (MQTT 4.7.1.2); at the root it skips `$` topics (MQTT 4.7.2).
        if (i > 0 && node.value !== undefined) visit(node.value);
        for (const [l, child] of node.children) {
          if (i === 0 && l.startsWith('$')) continue;
          all(child);
        }
        return;
      }
      if (level === '+') {
        for (const [l, child] of node.children) {
          if (i === 0 && l.startsWith('$')) continue;
          walk(child, i + 1);
        }
        return;
      }
      const child = node.children.get(level);
      if (child) walk(child, i + 1);
    };
    walk(this.root, 0);
  }
}
