"""The pglast side of :mod:`django_rollout.graph.runsql`: statements to ``SqlAction``s.

Imported on first use: pglast's AST module is slow to import, and most runs parse no SQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import pglast
from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType, VariableSetKind
from pglast.parser import ParseError, scan
from pglast.stream import RawStream

from django_rollout.graph.runsql import (
    _NOT_VOLATILE,
    _SERIAL_TYPES,
    _VOLATILE,
    K,
    SqlAction,
    SqlParseError,
)


@lru_cache(maxsize=4096)
def _parse_text(text: str, vendor: str) -> tuple[SqlAction, ...]:
    """Parse one text (cached: a dozen rules read the same RunSQL; actions are frozen)."""
    try:
        raw_stmts = pglast.parse_sql(text)
    except ParseError:
        # Split with the scanner to parse statement by statement: the ones that parse keep
        # their meaning, and the error names the one that does not.
        return tuple(
            action for chunk in _scanner_split(text) for action in _parse_one(chunk, vendor)
        )
    actions: list[SqlAction] = []
    for raw in raw_stmts:
        start = raw.stmt_location or 0
        stmt_text = (text[start : start + raw.stmt_len] if raw.stmt_len else text[start:]).strip()
        actions.extend(_actions(raw.stmt, stmt_text))
    return tuple(actions)


def _parse_one(text: str, vendor: str) -> list[SqlAction]:
    try:
        raw_stmts = pglast.parse_sql(text)
    except ParseError as error:
        if vendor == "sqlite":
            return [SqlAction(K.OTHER, None, sql=text)]
        snippet = " ".join(text.split())
        if len(snippet) > 60:
            snippet = snippet[:57] + "..."
        raise SqlParseError(f"cannot parse SQL {snippet!r}: {error}") from None
    return [action for raw in raw_stmts for action in _actions(raw.stmt, text)]


def _scanner_split(text: str) -> list[str]:
    chunks: list[str] = []
    start = 0
    for token in scan(text):
        if token.name == "ASCII_59":  # a top-level ";": literals and comments are one token
            chunks.append(text[start : token.start])
            start = token.end + 1
    chunks.append(text[start:])
    return [chunk.strip() for chunk in chunks if _has_tokens(chunk)]


def _has_tokens(chunk: str) -> bool:
    return any(not token.name.endswith("COMMENT") for token in scan(chunk))


def _lower(text: str | None) -> str | None:
    return text.lower() if text else None


def _name(relation: ast.RangeVar | None) -> str | None:
    return relation.relname.lower() if relation is not None and relation.relname else None


def _strings(nodes: Sequence[Any] | None) -> tuple[str, ...]:
    return tuple(node.sval or "" for node in nodes or () if isinstance(node, ast.String))


def _render(node: Any) -> str:
    return str(RawStream()(node))


def _actions(stmt: ast.Node | None, sql: str) -> list[SqlAction]:
    handler = _HANDLERS.get(type(stmt))
    if handler is None:
        return [SqlAction(K.OTHER, None, sql=sql)]
    actions: list[SqlAction] = handler(stmt, sql)
    return actions


def _create_table(stmt: ast.CreateStmt, sql: str) -> list[SqlAction]:
    table = _name(stmt.relation)
    columns: list[str] = []
    targets: list[str | None] = []
    for element in stmt.tableElts or ():
        if isinstance(element, ast.ColumnDef):
            columns.append((element.colname or "").lower())
            constraints = element.constraints or ()
        else:
            constraints = (element,)
        for constraint in constraints:
            if (
                isinstance(constraint, ast.Constraint)
                and constraint.contype is ConstrType.CONSTR_FOREIGN
            ):
                target = _name(constraint.pktable)
                if target is not None and target not in targets:
                    targets.append(target)
    # One action per referenced table, so each foreign key's lock on its target is visible.
    return [
        SqlAction(K.CREATE_TABLE, table, tuple(columns), referenced_table=target, sql=sql)
        for target in targets or [None]
    ]


def _create_table_as(stmt: ast.CreateTableAsStmt, sql: str) -> list[SqlAction]:
    if stmt.objtype is not ObjectType.OBJECT_TABLE:
        return [SqlAction(K.OTHER, None, sql=sql)]
    into = stmt.into
    return [SqlAction(K.CREATE_TABLE, _name(into.rel if into else None), sql=sql)]


def _drop(stmt: ast.DropStmt, sql: str) -> list[SqlAction]:
    actions: list[SqlAction] = []
    for obj in stmt.objects or ():
        name = _strings(obj)[-1].lower() if _strings(obj) else None
        if stmt.removeType is ObjectType.OBJECT_TABLE:
            actions.append(SqlAction(K.DROP_TABLE, name, sql=sql))
        elif stmt.removeType is ObjectType.OBJECT_INDEX:
            kind = K.DROP_INDEX_CONCURRENTLY if stmt.concurrent else K.DROP_INDEX
            actions.append(
                SqlAction(kind, None, index_name=name, concurrently=bool(stmt.concurrent), sql=sql)
            )
        else:
            actions.append(SqlAction(K.OTHER, None, sql=sql))
    return actions


def _rename(stmt: ast.RenameStmt, sql: str) -> list[SqlAction]:
    table = _name(stmt.relation)
    new_name = stmt.newname.lower() if stmt.newname else None
    kind = stmt.renameType
    if kind is ObjectType.OBJECT_TABLE:
        return [SqlAction(K.RENAME_TABLE, table, new_name=new_name, sql=sql)]
    if kind is ObjectType.OBJECT_COLUMN and stmt.relationType is ObjectType.OBJECT_TABLE:
        column = ((stmt.subname or "").lower(),)
        return [SqlAction(K.RENAME_COLUMN, table, column, new_name=new_name, sql=sql)]
    if kind is ObjectType.OBJECT_INDEX:
        return [SqlAction(K.RENAME_INDEX, None, index_name=table, new_name=new_name, sql=sql)]
    if kind is ObjectType.OBJECT_TABCONSTRAINT:
        constraint = _lower(stmt.subname)
        return [
            SqlAction(
                K.RENAME_CONSTRAINT, table, constraint_name=constraint, new_name=new_name, sql=sql
            )
        ]
    return [SqlAction(K.OTHER, table, sql=sql)]


def _index(stmt: ast.IndexStmt, sql: str) -> list[SqlAction]:
    columns = tuple(p.name.lower() for p in stmt.indexParams or () if p.name)
    kind = K.CREATE_INDEX_CONCURRENTLY if stmt.concurrent else K.CREATE_INDEX
    return [
        SqlAction(
            kind,
            _name(stmt.relation),
            columns,
            concurrently=bool(stmt.concurrent),
            index_name=stmt.idxname.lower() if stmt.idxname else None,
            unique=bool(stmt.unique),
            has_where=stmt.whereClause is not None,
            sql=sql,
        )
    ]


def _reindex(stmt: ast.ReindexStmt, sql: str) -> list[SqlAction]:
    concurrently = any(p.defname == "concurrently" for p in stmt.params or ())
    kind = K.REINDEX_CONCURRENTLY if concurrently else K.REINDEX
    name = _name(stmt.relation)
    if getattr(stmt.kind, "name", None) == "REINDEX_OBJECT_INDEX":
        return [SqlAction(kind, None, index_name=name, concurrently=concurrently, sql=sql)]
    if getattr(stmt.kind, "name", None) == "REINDEX_OBJECT_TABLE":
        return [SqlAction(kind, name, concurrently=concurrently, sql=sql)]
    return [SqlAction(K.OTHER, None, sql=sql)]


def _truncate(stmt: ast.TruncateStmt, sql: str) -> list[SqlAction]:
    return [SqlAction(K.TRUNCATE, _name(rel), sql=sql) for rel in stmt.relations or ()]


def _update(stmt: ast.UpdateStmt, sql: str) -> list[SqlAction]:
    columns = tuple(t.name.lower() for t in stmt.targetList or () if t.name)
    return [
        SqlAction(
            K.UPDATE, _name(stmt.relation), columns, has_where=stmt.whereClause is not None, sql=sql
        )
    ]


def _insert(stmt: ast.InsertStmt, sql: str) -> list[SqlAction]:
    columns = tuple(t.name.lower() for t in stmt.cols or () if t.name)
    return [SqlAction(K.INSERT, _name(stmt.relation), columns, sql=sql)]


def _delete(stmt: ast.DeleteStmt, sql: str) -> list[SqlAction]:
    has_where = stmt.whereClause is not None
    return [SqlAction(K.DELETE, _name(stmt.relation), has_where=has_where, sql=sql)]


def _set(stmt: ast.VariableSetStmt, sql: str) -> list[SqlAction]:
    kinds = {"lock_timeout": K.SET_LOCK_TIMEOUT, "statement_timeout": K.SET_STATEMENT_TIMEOUT}
    kind = kinds.get((stmt.name or "").lower())
    if kind is None:
        return [SqlAction(K.OTHER, None, sql=sql)]
    value: str | None = "DEFAULT"
    if stmt.kind is VariableSetKind.VAR_SET_VALUE and stmt.args:
        constant = stmt.args[0].val
        value = str(constant.sval if isinstance(constant, ast.String) else constant.ival)
    return [SqlAction(kind, None, value=value, sql=sql)]


def _alter_table(stmt: ast.AlterTableStmt, sql: str) -> list[SqlAction]:
    table = _name(stmt.relation)
    if stmt.objtype is not ObjectType.OBJECT_TABLE:
        return [SqlAction(K.OTHER, table, sql=sql)]
    actions: list[SqlAction] = []
    for cmd in stmt.cmds or ():
        actions.extend(_alter_table_cmd(cmd, table, sql))
    return actions


def _alter_table_cmd(cmd: ast.AlterTableCmd, table: str | None, sql: str) -> list[SqlAction]:
    sub = cmd.subtype
    definition: Any = cmd.def_  # a ColumnDef, Constraint, PartitionCmd or expression
    column = (cmd.name.lower(),) if cmd.name else ()
    if sub is AlterTableType.AT_AddColumn:
        return _add_column(definition, table, sql)
    if sub is AlterTableType.AT_DropColumn:
        return [SqlAction(K.DROP_COLUMN, table, column, sql=sql)]
    if sub is AlterTableType.AT_AlterColumnType:
        new_type = _render(definition.typeName)
        return [SqlAction(K.ALTER_COLUMN_TYPE, table, column, value=new_type, sql=sql)]
    if sub is AlterTableType.AT_SetNotNull:
        return [SqlAction(K.SET_NOT_NULL, table, column, sql=sql)]
    if sub is AlterTableType.AT_DropNotNull:
        return [SqlAction(K.DROP_NOT_NULL, table, column, sql=sql)]
    if sub is AlterTableType.AT_ColumnDefault:
        if definition is None:
            return [SqlAction(K.DROP_DEFAULT, table, column, sql=sql)]
        return [SqlAction(K.SET_DEFAULT, table, column, value=_render(definition), sql=sql)]
    if sub is AlterTableType.AT_AddConstraint:
        return [_add_constraint(definition, table, sql)]
    if sub is AlterTableType.AT_ValidateConstraint:
        return [SqlAction(K.VALIDATE_CONSTRAINT, table, constraint_name=_lower(cmd.name), sql=sql)]
    if sub is AlterTableType.AT_DropConstraint:
        return [SqlAction(K.DROP_CONSTRAINT, table, constraint_name=_lower(cmd.name), sql=sql)]
    if sub is AlterTableType.AT_AttachPartition:
        return [SqlAction(K.ATTACH_PARTITION, table, partition=_name(definition.name), sql=sql)]
    if sub is AlterTableType.AT_DetachPartition:
        concurrently = bool(definition.concurrent)
        kind = K.DETACH_PARTITION_CONCURRENTLY if concurrently else K.DETACH_PARTITION
        partition = _name(definition.name)
        return [SqlAction(kind, table, partition=partition, concurrently=concurrently, sql=sql)]
    return [SqlAction(K.OTHER, table, column, sql=sql)]


def _add_column(column: ast.ColumnDef, table: str | None, sql: str) -> list[SqlAction]:
    name = ((column.colname or "").lower(),)
    type_names = _strings(column.typeName.names) if column.typeName else ()
    rewrites = bool(type_names) and type_names[-1].lower() in _SERIAL_TYPES
    extra: list[SqlAction] = []
    for constraint in column.constraints or ():
        contype = constraint.contype
        if contype is ConstrType.CONSTR_DEFAULT:
            rewrites = rewrites or _is_volatile(constraint.raw_expr)
        elif contype in (ConstrType.CONSTR_IDENTITY, ConstrType.CONSTR_GENERATED):
            rewrites = True  # every existing row gets its own value
        elif contype is ConstrType.CONSTR_FOREIGN:
            extra.append(
                SqlAction(
                    K.ADD_FOREIGN_KEY,
                    table,
                    name,
                    referenced_table=_name(constraint.pktable),
                    constraint_name=_lower(constraint.conname),
                    sql=sql,
                )
            )
        elif contype is ConstrType.CONSTR_UNIQUE:
            extra.append(SqlAction(K.ADD_UNIQUE_CONSTRAINT, table, name, unique=True, sql=sql))
        elif contype is ConstrType.CONSTR_PRIMARY:
            extra.append(SqlAction(K.ADD_PRIMARY_KEY, table, name, unique=True, sql=sql))
        elif contype is ConstrType.CONSTR_CHECK:
            extra.append(SqlAction(K.ADD_CHECK, table, name, sql=sql))
    kind = K.ADD_COLUMN_VOLATILE_DEFAULT if rewrites else K.ADD_COLUMN
    return [SqlAction(kind, table, name, sql=sql), *extra]


def _is_volatile(expr: ast.Node | None) -> bool:
    """Return True if *expr* may give each row a different value. If in doubt, return True."""
    if expr is None:
        return False
    for node in _walk(expr):
        if isinstance(node, ast.FuncCall):
            name = _strings(node.funcname)[-1].lower()
            if name in _VOLATILE or name not in _NOT_VOLATILE:
                return True
        elif isinstance(node, (ast.SubLink, ast.ParamRef)):
            return True
    return False


def _walk(node: Any) -> Iterator[Any]:
    if isinstance(node, ast.Node):
        yield node
        for attr in node:
            yield from _walk(getattr(node, attr))
    elif isinstance(node, (tuple, list)):
        for item in node:
            yield from _walk(item)


def _add_constraint(constraint: ast.Constraint, table: str | None, sql: str) -> SqlAction:
    contype = constraint.contype
    name = _lower(constraint.conname)
    keys = tuple(k.lower() for k in _strings(constraint.keys))
    not_valid = bool(constraint.skip_validation)
    common: dict[str, Any] = {"constraint_name": name, "sql": sql}
    if contype in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY):
        index = _lower(constraint.indexname)
        if contype is ConstrType.CONSTR_PRIMARY:
            kind = K.ADD_PRIMARY_KEY
        else:
            kind = K.ADD_UNIQUE_USING_INDEX if index else K.ADD_UNIQUE_CONSTRAINT
        return SqlAction(kind, table, keys, index_name=index, unique=True, **common)
    if contype is ConstrType.CONSTR_CHECK:
        kind = K.ADD_CHECK_NOT_VALID if not_valid else K.ADD_CHECK
        return SqlAction(kind, table, value=_render(constraint.raw_expr), **common)
    if contype is ConstrType.CONSTR_FOREIGN:
        kind = K.ADD_FOREIGN_KEY_NOT_VALID if not_valid else K.ADD_FOREIGN_KEY
        columns = tuple(c.lower() for c in _strings(constraint.fk_attrs))
        target = _name(constraint.pktable)
        return SqlAction(kind, table, columns, referenced_table=target, **common)
    if contype is ConstrType.CONSTR_NOTNULL:
        kind = K.ADD_NOT_NULL_NOT_VALID if not_valid else K.SET_NOT_NULL
        return SqlAction(kind, table, keys, **common)
    return SqlAction(K.OTHER, table, keys, **common)


_HANDLERS: dict[type[Any], Any] = {
    ast.CreateStmt: _create_table,
    ast.CreateTableAsStmt: _create_table_as,
    ast.DropStmt: _drop,
    ast.RenameStmt: _rename,
    ast.IndexStmt: _index,
    ast.ReindexStmt: _reindex,
    ast.TruncateStmt: _truncate,
    ast.UpdateStmt: _update,
    ast.InsertStmt: _insert,
    ast.DeleteStmt: _delete,
    ast.VariableSetStmt: _set,
    ast.AlterTableStmt: _alter_table,
}
