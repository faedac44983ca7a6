//! ALTER TABLE / VIEW / MATERIALIZED VIEW ... RENAME TO: the relation takes its new name, and each
//! view reading it has its statement rewritten to say the new name. Postgres follows a rename by
//! oid; here a relation's statement is what recovery plans again, so it must name what exists.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AlterTable, AlterTableOperation, Ident, ObjectName, Query, RenameTableNameKind, Statement,
    TableAlias, TableFactor, VisitMut, VisitorMut,
};

use crate::catalog::{Relation, RelationKind};
use crate::error::{CatalogError, PlanError, Result};
use crate::session::{CommandTag, QueryResult, Session};
use crate::sql::streaming::{Rename, RenameTarget};
use crate::sql::{identifier, relation_name};
use crate::storage::wal::Redefinition;

/// The rename an ALTER TABLE asks for, or `None` for any other ALTER TABLE.
pub(super) fn of_alter_table(alter: &AlterTable) -> Result<Option<Rename>> {
    let [AlterTableOperation::RenameTable { table_name }] = alter.operations.as_slice() else {
        return Ok(None);
    };
    let (RenameTableNameKind::To(new_name) | RenameTableNameKind::As(new_name)) = table_name;
    // As in Postgres, the new name stays in the relation's schema and cannot be qualified.
    let new_name = match new_name.0.as_slice() {
        [part] => part.as_ident().map(identifier),
        _ => None,
    }
    .ok_or_else(|| {
        PlanError::Syntax(format!(
            "RENAME TO takes an unqualified name, not {new_name}"
        ))
    })?;
    Ok(Some(Rename {
        target: RenameTarget::Table,
        if_exists: alter.if_exists,
        name: relation_name(&alter.name)?,
        new_name,
    }))
}

pub(super) async fn execute(session: &Session, rename: &Rename) -> Result<QueryResult> {
    let tag = match rename.target {
        RenameTarget::Table => "ALTER TABLE",
        RenameTarget::View => "ALTER VIEW",
        RenameTarget::MaterializedView => "ALTER MATERIALIZED VIEW",
    };
    let snapshot = session.coordinator.snapshot();
    let catalog = &snapshot.catalog;
    let Some(relation) = catalog.get(&rename.name) else {
        if rename.if_exists {
            return Ok(QueryResult::Command(CommandTag::new(tag)));
        }
        return Err(CatalogError::UndefinedObject {
            kind: "relation",
            name: rename.name.clone(),
        }
        .into());
    };
    check_kind(relation, rename)?;
    if catalog.get(&rename.new_name).is_some() {
        return Err(CatalogError::DuplicateObject(rename.new_name.clone()).into());
    }
    if crate::pg_catalog::is_catalog_relation(&session.context, &rename.new_name) {
        return Err(CatalogError::ReservedName(rename.new_name.clone()).into());
    }
    let mut redefinitions = vec![renamed(relation, &rename.new_name)?];
    for dependent in catalog.dependents(relation.id) {
        redefinitions.push(reading_renamed(dependent, relation, &rename.new_name)?);
    }
    session
        .coordinator
        .redefine(relation.id, redefinitions, snapshot.catalog_version)
        .await?;
    Ok(QueryResult::Command(CommandTag::new(tag)))
}

/// Postgres's rules: ALTER VIEW and ALTER MATERIALIZED VIEW name their own kind, ALTER TABLE any
/// relation with rows. Sources, sinks and connections keep the statement they were written
/// with, which cannot be printed again under another name.
fn check_kind(relation: &Relation, rename: &Rename) -> Result<()> {
    let expected = match rename.target {
        RenameTarget::View => Some(RelationKind::View),
        RenameTarget::MaterializedView => Some(RelationKind::MaterializedView),
        RenameTarget::Table => None,
    };
    if let Some(expected) = expected
        && relation.kind != expected
    {
        return Err(CatalogError::WrongObjectType {
            name: rename.name.clone(),
            expected: expected.describe(),
        }
        .into());
    }
    match relation.kind {
        RelationKind::Table | RelationKind::View | RelationKind::MaterializedView => Ok(()),
        RelationKind::Source | RelationKind::Sink | RelationKind::Connection => {
            Err(PlanError::Unsupported(format!(
                "renaming a {} is not supported",
                relation.kind.describe()
            ))
            .into())
        }
    }
}

/// The relation's own statement under its new name.
fn renamed(relation: &Relation, new_name: &str) -> Result<Redefinition> {
    let sql = match standard_statement_of(relation)? {
        Statement::CreateTable(mut create) => {
            create.name = quoted_name(new_name);
            Statement::CreateTable(create).to_string()
        }
        Statement::CreateView(mut create) => {
            create.name = quoted_name(new_name);
            Statement::CreateView(create).to_string()
        }
        _ => return Err(kept_as_written(relation)),
    };
    Ok(Redefinition {
        id: relation.id,
        name: new_name.to_string(),
        sql,
        definition: relation.definition.clone(),
    })
}

/// A view or sink reading `renamed`, its statement rewritten to read it under `new_name`.
fn reading_renamed(
    dependent: &Relation,
    renamed: &Relation,
    new_name: &str,
) -> Result<Redefinition> {
    let unsupported = || {
        PlanError::Unsupported(format!(
            "cannot rename {} {}: {} {} reads it, and its statement cannot be rewritten to the new name",
            renamed.kind.describe(),
            renamed.name,
            dependent.kind.describe(),
            dependent.name
        ))
    };
    if dependent.kind == RelationKind::Sink {
        let sql = crate::sql::streaming::sink_reading(&dependent.sql, new_name)
            .ok_or_else(unsupported)?;
        return Ok(Redefinition {
            id: dependent.id,
            name: dependent.name.clone(),
            sql,
            definition: dependent.definition.clone(),
        });
    }
    let Ok(Statement::CreateView(mut create)) = standard_statement_of(dependent) else {
        return Err(unsupported().into());
    };
    let mut references = References {
        old_name: &renamed.name,
        new_name,
        shadowed: false,
    };
    let _ = create.query.visit(&mut references);
    if references.shadowed {
        return Err(unsupported().into());
    }
    Ok(Redefinition {
        id: dependent.id,
        name: dependent.name.clone(),
        definition: Some(create.query.to_string()),
        sql: Statement::CreateView(create).to_string(),
    })
}

/// The relation's statement, when it is standard SQL (not one Tributary keeps as written: a
/// table with a WATERMARK, a view that emits on window close, a connector).
fn standard_statement_of(relation: &Relation) -> Result<Statement> {
    super::standard_statement(&relation.sql).map_err(|_| kept_as_written(relation))
}

fn kept_as_written(relation: &Relation) -> crate::error::Error {
    PlanError::Unsupported(format!(
        "renaming {} {} is not supported: its statement (with WATERMARK or EMIT ON WINDOW CLOSE) is kept as written",
        relation.kind.describe(),
        relation.name
    ))
    .into()
}

fn quoted_name(name: &str) -> ObjectName {
    ObjectName::from(vec![Ident::with_quote('"', name)])
}

/// Points every FROM item naming the old relation at the new name, aliased to the old one so
/// that columns qualified with it still resolve.
struct References<'a> {
    old_name: &'a str,
    new_name: &'a str,
    /// A WITH query of the old name hides the relation somewhere in the statement: which
    /// references mean which is left to a human.
    shadowed: bool,
}

impl VisitorMut for References<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(with) = &query.with
            && with
                .cte_tables
                .iter()
                .any(|cte| identifier(&cte.alias.name) == self.old_name)
        {
            self.shadowed = true;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
            && relation_name(name).is_ok_and(|name| name == self.old_name)
        {
            *name = quoted_name(self.new_name);
            if alias.is_none() {
                *alias = Some(TableAlias {
                    explicit: true,
                    name: Ident::with_quote('"', self.old_name),
                    columns: Vec::new(),
                    at: None,
                });
            }
        }
        ControlFlow::Continue(())
    }
}
