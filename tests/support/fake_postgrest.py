"""A respx side effect that answers like Supabase (PostgREST + Storage) over a real, migrated
PostgreSQL database, for the subset SupabaseStore uses.

Rows go through `jsonb_populate_record(set)` as PostgREST does, every request runs in its own
transaction as `service_role` (so grants and RLS policies count), RPCs call the real SQL functions,
and database errors come back as PostgREST's `{code, message, details, hint}` with its statuses.
Storage serves files from a directory. Deliberately small: no embedding, no auth, no joins.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

__all__ = ["FakeSupabase"]

_RESERVED = {"select", "order", "limit", "offset", "on_conflict", "columns"}
_OPS = {"eq": "=", "neq": "<>", "lt": "<", "gt": ">", "lte": "<=", "gte": ">="}
_MAX_ROWS = 1000
_STORAGE = "/storage/v1/object/authenticated/"


def _status_for(code: str) -> int:
    if code in ("23505", "23503"):
        return 409
    if code == "42501":
        return 403
    if code.startswith(("08", "53")):
        return 503
    if code[:2] in ("22", "23", "P0", "42"):
        return 400
    return 500


def _error(
    status: int, code: str, message: str, details: Any = None, hint: Any = None
) -> httpx.Response:
    body = {"code": code, "message": message, "details": details, "hint": hint}
    return httpx.Response(status, json=body)


def _split_list(raw: str) -> list[str]:
    """`(a,"b,c",and(d,e))` → ['a', 'b,c', 'and(d,e)'], honouring double quotes and backslash
    escapes; a nested group is kept verbatim, for its own parse."""
    items: list[str] = []
    current, quoted, escaped, depth = "", False, False, 0
    for ch in raw.strip()[1:-1]:
        if depth:
            current += ch
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = not quoted
            elif not quoted and ch in "()":
                depth += 1 if ch == "(" else -1
        elif escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append(current)
            current = ""
        else:
            current += ch
            depth += 1 if ch == "(" and not quoted else 0
    items.append(current)
    return items


class FakeSupabase:
    def __init__(self, conninfo: str, storage_dir: Path) -> None:
        self.conn = psycopg.connect(conninfo)
        self.storage_dir = storage_dir

    def close(self) -> None:
        self.conn.close()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().split("?")[0]
        if path.startswith(_STORAGE) and request.method == "GET":
            return self._storage(unquote(path[len(_STORAGE) :]))
        if not path.startswith("/rest/v1/"):
            return _error(404, "PGRST125", f"invalid path {path}")
        try:
            with self.conn.transaction():
                self.conn.execute("SET LOCAL ROLE service_role")
                name = path[len("/rest/v1/") :]
                if name.startswith("rpc/"):
                    return self._rpc(name[4:], json.loads(request.content or b"{}"))
                return self._table(name, request)
        except psycopg.Error as exc:
            code = exc.sqlstate or "XX000"
            diag = exc.diag
            if code == "42883":
                return _error(404, "PGRST202", f"Could not find the function public.{path}")
            return _error(
                _status_for(code),
                code,
                diag.message_primary or str(exc),
                diag.message_detail,
                diag.message_hint,
            )

    # --- storage ---------------------------------------------------------------------------

    def _storage(self, key: str) -> httpx.Response:
        target = (self.storage_dir / key).resolve()
        if not target.is_relative_to(self.storage_dir.resolve()) or not target.is_file():
            body = {"statusCode": "404", "error": "not_found", "message": "Object not found"}
            return httpx.Response(400, json=body)
        return httpx.Response(200, content=target.read_bytes())

    # --- rpc -------------------------------------------------------------------------------

    def _rpc(self, fn: str, args: dict[str, Any]) -> httpx.Response:
        info = self.conn.execute(
            "SELECT p.proretset, t.typtype FROM pg_proc p JOIN pg_type t ON t.oid = p.prorettype"
            " WHERE p.proname = %s AND p.pronamespace = 'public'::regnamespace",
            (fn,),
        ).fetchone()
        if info is None:
            return _error(404, "PGRST202", f"Could not find the function public.{fn}")
        returns_set, typtype = info
        call = sql.SQL("public.{}({})").format(
            sql.Identifier(fn),
            sql.SQL(", ").join(
                sql.SQL("{} => {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in args
            ),
        )
        if returns_set:
            # PostgREST's db-max-rows caps what a set-returning function answers, too.
            query = sql.SQL(
                "SELECT coalesce(jsonb_agg(to_jsonb(r)), '[]') FROM (SELECT * FROM {} LIMIT {}) r"
            ).format(call, sql.Literal(_MAX_ROWS))
        elif typtype == "c":
            query = sql.SQL("SELECT to_jsonb(r) FROM {} r").format(call)
        else:
            query = sql.SQL("SELECT to_jsonb({})").format(call)
        # PostgREST hands a JSON object or array argument to a json/jsonb parameter as is.
        params = {k: Jsonb(v) if isinstance(v, dict | list) else v for k, v in args.items()}
        row = self.conn.execute(query, params).fetchone()
        return httpx.Response(200, json=row[0] if row else None)

    # --- tables ----------------------------------------------------------------------------

    def _columns(self, table: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name = %s",
            (table,),
        ).fetchall()
        return [r[0] for r in rows]

    def _condition(self, column: str, expr: str, params: list[Any]) -> sql.Composable:
        op, _, value = expr.partition(".")
        col = sql.Identifier(column)
        if op == "is":
            keyword = {"null": "NULL", "true": "TRUE", "false": "FALSE"}[value]
            return sql.SQL("{} IS {}").format(col, sql.SQL(keyword))  # type: ignore[arg-type]
        if op == "in":
            values = _split_list(value)
            params.extend(values)
            marks = sql.SQL(", ").join(sql.Placeholder() for _ in values)
            return sql.SQL("{} IN ({})").format(col, marks)
        params.append(value)
        return sql.SQL("{} {} %s").format(col, sql.SQL(_OPS[op]))  # type: ignore[arg-type]

    def _logic(self, op: str, expr: str, params: list[Any]) -> sql.Composable:
        """`or=(a.eq.1,and(b.gt.2,c.lt.3))`: PostgREST's logic trees, nested."""
        terms: list[sql.Composable] = []
        for item in _split_list(expr):
            nested = re.fullmatch(r"(and|or)(\(.*\))", item, re.DOTALL)
            if nested:
                terms.append(self._logic(nested[1], nested[2], params))
            elif condition := re.fullmatch(r"([^.]+)\.(.*)", item, re.DOTALL):
                terms.append(self._condition(condition[1], condition[2], params))
        joiner = sql.SQL(" OR " if op == "or" else " AND ")
        return sql.SQL("({})").format(joiner.join(terms))

    def _where(self, query: list[tuple[str, str]], params: list[Any]) -> sql.Composable:
        parts: list[sql.Composable] = []
        for key, expr in query:
            if key in _RESERVED:
                continue
            if key in ("or", "and"):
                parts.append(self._logic(key, expr, params))
            else:
                parts.append(self._condition(key, expr, params))
        return sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")

    def _table(self, table: str, request: httpx.Request) -> httpx.Response:
        known = self._columns(table)
        if not known:
            return _error(
                404, "PGRST205", f"Could not find the table 'public.{table}' in the schema cache"
            )
        query = parse_qsl(urlsplit(str(request.url)).query, keep_blank_values=True)
        opts = dict(query)
        prefer = request.headers.get("prefer", "")
        select = opts.get("select", "*")
        returning = (
            sql.SQL("*")
            if select == "*"
            else sql.SQL(", ").join(sql.Identifier(c) for c in select.split(","))
        )
        ident = sql.Identifier("public", table)
        params: list[Any] = []
        if request.method in ("POST", "PATCH"):
            payload = json.loads(request.content)
            rows = payload if isinstance(payload, list) else [payload]
            columns = opts["columns"].split(",") if "columns" in opts else list(rows[0])
            for column in columns:
                if column not in known:
                    return _error(
                        400,
                        "PGRST204",
                        f"Could not find the '{column}' column of '{table}' in the schema cache",
                    )
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        if request.method == "POST":
            statement = sql.SQL(
                "INSERT INTO {t} ({cols})"
                " SELECT {cols} FROM jsonb_populate_recordset(NULL::{t}, %s)"
            ).format(t=ident, cols=cols)
            params.append(json.dumps(rows))
            if "on_conflict" in opts and "merge-duplicates" in prefer:
                keys = opts["on_conflict"].split(",")
                updates = sql.SQL(", ").join(
                    sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c))
                    for c in columns
                    if c not in keys
                )
                statement += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
                    sql.SQL(", ").join(sql.Identifier(k) for k in keys), updates
                )
            self.conn.execute(statement, params)
            return httpx.Response(201)
        if request.method == "PATCH":
            params.append(json.dumps(rows[0]))
            where = self._where(query, params)
            statement = sql.SQL(
                "UPDATE {t} SET ({cols}) ="
                " (SELECT {cols} FROM jsonb_populate_record(NULL::{t}, %s))"
                " WHERE {w} RETURNING {r}"
            ).format(t=ident, cols=cols, w=where, r=returning)
        elif request.method == "DELETE":
            where = self._where(query, params)
            statement = sql.SQL("DELETE FROM {t} WHERE {w} RETURNING {r}").format(
                t=ident, w=where, r=returning
            )
        else:
            return self._select(ident, returning, query, opts, prefer)
        wrapped = sql.SQL("WITH x AS ({}) SELECT coalesce(json_agg(x), '[]') FROM x").format(
            statement
        )
        row = self.conn.execute(wrapped, params).fetchone()
        if "return=representation" not in prefer:
            return httpx.Response(204)
        return httpx.Response(200, json=row[0] if row else [])

    def _select(
        self,
        ident: sql.Identifier,
        returning: sql.Composable,
        query: list[tuple[str, str]],
        opts: dict[str, str],
        prefer: str,
    ) -> httpx.Response:
        params: list[Any] = []
        where = self._where(query, params)
        order = sql.SQL("")
        if "order" in opts:
            terms = []
            for term in opts["order"].split(","):
                column, _, direction = term.partition(".")
                desc = sql.SQL(" DESC" if direction == "desc" else " ASC")
                terms.append(sql.SQL("{}{}").format(sql.Identifier(column), desc))
            order = sql.SQL(" ORDER BY ") + sql.SQL(", ").join(terms)
        limit = min(int(opts.get("limit", _MAX_ROWS)), _MAX_ROWS)
        offset = int(opts.get("offset", 0))
        statement = sql.SQL("SELECT {r} FROM {t} WHERE {w}{o} LIMIT {l} OFFSET {f}").format(
            r=returning, t=ident, w=where, o=order, l=sql.Literal(limit), f=sql.Literal(offset)
        )
        wrapped = sql.SQL("WITH x AS ({}) SELECT coalesce(json_agg(x), '[]') FROM x").format(
            statement
        )
        row = self.conn.execute(wrapped, params).fetchone()
        rows = row[0] if row else []
        headers = {}
        end = f"{offset}-{offset + len(rows) - 1}" if rows else "*"
        if "count=exact" in prefer:
            total_row = self.conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE {}").format(ident, where), params
            ).fetchone()
            headers["Content-Range"] = f"{end}/{total_row[0] if total_row else 0}"
        else:
            headers["Content-Range"] = f"{end}/*"
        return httpx.Response(200, json=rows, headers=headers)
