// The statement check of one read-access PostgreSQL session: decides, per client message, whether
// a Query, a Parse or a fast-path call may be forwarded, and remembers the SQL-level prepared
// statements it saw PREPAREd as reads so that their EXECUTE can be allowed.
import {
  classifyStatements,
  SQLSTATE_INSUFFICIENT_PRIVILEGE,
  SQLSTATE_SYNTAX_ERROR,
} from '../../src/policy/statement-classifier.js';

export interface StatementRefusal {
  sqlstate: string;
  message: string;
  /** 1-based character position in the statement (ErrorResponse 'P'), for syntax errors. */
  position?: number;
}

/** One read-access session's statement check: holds the names of SQL-level prepared statements it saw PREPAREd as reads. */
export class ReadStatementCheck {
  /** Names as PostgreSQL folds them (from the parse tree, never from text). */
  private readonly readPrepared = new Set<string>();

  constructor(
    private readonly who: string,
    private readonly connection: string,
  ) {}

  /**
   * type: 'Q' simple query, 'P' Parse (extended protocol), 'F' fast-path FunctionCall (text '').
   * null = forward. A refused message changes nothing the check remembers.
   *
   * @example
   *   const check = new ReadStatementCheck('alice@example.com', 'vectors');
   *   check.check('Q', 'PREPARE p AS SELECT 1; EXECUTE p'); // null
   *   check.check('Q', 'DELETE FROM docs'); // { sqlstate: '42501', message: 'permission denied: ...' }
   */
  check(type: 'Q' | 'P' | 'F', text: string): StatementRefusal | null {
    if (type === 'F') {
      return this.denied('function calls over the fast-path protocol are not allowed');
    }
    const result = classifyStatements(text);
    if (!result.ok) {
      const r = result.refusal;
      if (r.sqlstate === SQLSTATE_SYNTAX_ERROR) {
        // What PostgreSQL would answer: its parser's message, no "permission denied".
        return r.position === undefined ? { sqlstate: r.sqlstate, message: r.reason } : { sqlstate: r.sqlstate, message: r.reason, position: r.position };
      }
      return this.refused(r.reason, r.statement);
    }
    // Apply the statements' effects to a copy: a refused message registers nothing.
    const names = new Set(this.readPrepared);
    for (const { classification: c, effect } of result.statements) {
      if (effect?.op === 'execute') {
        if (names.has(effect.name)) continue;
        if (c.kind === 'read') continue; // not produced today; an EXECUTE is never read on its own
        return this.refused(`EXECUTE of "${effect.name}" (not PREPAREd as a read in this session)`, c.statement);
      }
      if (c.kind !== 'read') return this.refused(c.reason, c.statement);
      if (effect?.op === 'prepare') names.add(effect.name);
      else if (effect?.op === 'deallocate') names.delete(effect.name);
      else if (effect?.op === 'deallocate-all') names.clear();
    }
    this.readPrepared.clear();
    for (const n of names) this.readPrepared.add(n);
    return null;
  }

  private refused(reason: string, statement: string): StatementRefusal {
    return this.denied(`${reason} is not allowed (statement: ${statement})`);
  }

  private denied(what: string): StatementRefusal {
    return { sqlstate: SQLSTATE_INSUFFICIENT_PRIVILEGE, message: `permission denied: ${this.who} has read access to "${this.connection}"; ${what}` };
  }
}
