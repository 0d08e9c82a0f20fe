//! SQL for the forms that reach other entities and lists: `in`, `any` /
//! `all` lambdas over to-many navigation properties, and to-many paths in
//! conditions ("some element" semantics, as FROST-Server gives them). Each
//! collection becomes a correlated `EXISTS` subquery the schema writes
//! ([`Schema::collection`]), so the planner can probe an index per outer row.

use crate::ast::{Expr, ExprKind, LambdaOp, Path, Segment};
use crate::error::{Result, StaError};
use crate::sql::{Collection, Resolved, Schema, Translator, Typed};
use crate::typeck::{self, type_error, Type};

impl Translator<'_> {
    pub(crate) fn path_type(&self, p: &Path) -> std::result::Result<Type, String> {
        let (schema, rest) = self.scoped(p)?;
        element_type(schema, &rest)
    }

    /// The schema a path is read in (a lambda variable's or the entity's)
    /// and the path below the variable.
    pub(crate) fn scoped(&self, p: &Path) -> std::result::Result<(&dyn Schema, Path), String> {
        if let Some(Segment::Name(first)) = p.segments.first() {
            if let Some((_, label, schema)) = self.vars.iter().rev().find(|(v, _, _)| v == first) {
                if p.segments.len() == 1 {
                    return Err(format!("'{label}' is an element of a collection; name one of its properties"));
                }
                return Ok((&**schema, Path { segments: p.segments[1..].to_vec() }));
            }
        }
        Ok((self.schema, p.clone()))
    }

    /// The first path in `e` (outside lambda bodies) that crosses a to-many
    /// navigation property of its scope: the variable it starts with (if
    /// any) and the property.
    pub(crate) fn to_many_path(&self, e: &Expr) -> Option<(Option<String>, String)> {
        let mut stack = vec![e];
        while let Some(e) = stack.pop() {
            match &e.kind {
                ExprKind::Path(p) => {
                    let Ok((schema, rest)) = self.scoped(p) else { continue };
                    let var = (rest.segments.len() < p.segments.len()).then(|| p.names().next().unwrap_or("").into());
                    if let (Some(Segment::Name(nav)), true) = (rest.segments.first(), crosses(schema, &rest.segments)) {
                        return Some((var, nav.clone()));
                    }
                }
                ExprKind::Literal(_) | ExprKind::Lambda { .. } => {}
                ExprKind::Unary { operand, .. } => stack.push(operand),
                ExprKind::Binary { left, right, .. } => stack.extend([&**right, &**left]),
                ExprKind::Call { args, .. } => stack.extend(args.iter().rev()),
                ExprKind::In { value, list } => {
                    stack.extend(list.iter().rev());
                    stack.push(value);
                }
            }
        }
        None
    }

    /// A condition over a to-many path (`Datastreams/ObservedProperty/name eq
    /// 'x'`) holds when it holds for some element, as in FROST-Server: the
    /// condition becomes `EXISTS` over the collection, its paths rewritten
    /// to a fresh variable.
    pub(crate) fn implicit_any(&mut self, e: &Expr, var: Option<String>, nav: String) -> Result<Typed> {
        let (alias, n) = self.b.next_alias();
        // `#` never starts a name the parser accepts, so no client path can
        // refer to this variable.
        let fresh = format!("#{n}");
        let collection = self.collection(e, var.as_deref(), &nav, &alias)?;
        let rewritten = rewrite_paths(e, var.as_deref(), &nav, &fresh);
        self.vars.push((fresh, nav, collection.schema));
        let v = self.expr(&rewritten);
        self.vars.pop();
        let cond = self.coerce(v?, Type::Bool).sql;
        Ok(Typed { sql: format!("EXISTS (SELECT 1 {} AND {cond})", collection.from), ty: Type::Bool })
    }

    /// The collection `nav` of the variable `var` (or of the entity).
    pub(crate) fn collection(&self, e: &Expr, var: Option<&str>, nav: &str, alias: &str) -> Result<Collection> {
        let scope: &dyn Schema = match var {
            Some(v) => self.vars.iter().rev().find(|(name, _, _)| name == v).map_or(self.schema, |s| &*s.2),
            None => self.schema,
        };
        let message = match scope.collection(nav, alias) {
            Some(Ok(c)) => return Ok(c),
            Some(Err(message)) => message,
            None => {
                format!("'{nav}' is not a to-many navigation property here; any and all need one, like Datastreams")
            }
        };
        Err(StaError::UnknownProperty { option: self.option, pos: e.span.start, message })
    }

    /// `Datastreams/any(d: ...)`: `EXISTS` over the collection; `all` is
    /// "no element for which the condition is not true".
    pub(crate) fn lambda(
        &mut self,
        e: &Expr,
        collection: &Path,
        op: LambdaOp,
        var: &Option<String>,
        body: &Option<Box<Expr>>,
    ) -> Result<Typed> {
        let unknown = |message: String| StaError::UnknownProperty { option: self.option, pos: e.span.start, message };
        let segments = collection.segments.as_slice();
        let (scope_var, navs) = match segments {
            [Segment::Name(v), rest @ ..] if !rest.is_empty() && self.vars.iter().any(|(name, _, _)| name == v) => {
                (Some(v.as_str()), rest)
            }
            _ => (None, segments),
        };
        let Some(Segment::Name(nav)) = navs.first() else {
            return Err(unknown(format!("'{collection}' is not a collection")));
        };
        let (alias, n) = self.b.next_alias();
        let c = self.collection(e, scope_var, nav, &alias)?;
        if navs.len() > 1 {
            // `Thing/Locations/any(...)`: inside the one Thing, the lambda
            // over its Locations.
            if !c.single {
                let message = format!(
                    "{} takes one collection; '{nav}' in '{collection}' is a collection itself (nest a lambda)",
                    op.keyword()
                );
                return Err(unknown(message));
            }
            let fresh = format!("#{n}");
            let path = std::iter::once(Segment::Name(fresh.clone())).chain(navs[1..].iter().cloned());
            let collection = Path { segments: path.collect() };
            let inner =
                Expr { kind: ExprKind::Lambda { collection, op, var: var.clone(), body: body.clone() }, span: e.span };
            self.vars.push((fresh, nav.clone(), c.schema));
            let v = self.expr(&inner);
            self.vars.pop();
            return Ok(Typed { sql: format!("EXISTS (SELECT 1 {} AND {})", c.from, v?.sql), ty: Type::Bool });
        }
        if c.single {
            let message = format!("'{nav}' is one entity, not a collection: compare its properties directly");
            return Err(unknown(message));
        }
        let (Some(var), Some(body)) = (var, body) else {
            return Ok(Typed { sql: format!("EXISTS (SELECT 1 {})", c.from), ty: Type::Bool });
        };
        self.vars.push((var.clone(), var.clone(), c.schema));
        let v = self.expr(body);
        self.vars.pop();
        let v = v?;
        if !matches!(v.ty, Type::Bool | Type::Json | Type::Any) {
            let message = format!("the condition of {} must be a boolean expression, this is {}", op.keyword(), v.ty);
            return Err(type_error(self.option, body.span.start, message));
        }
        let cond = self.coerce(v, Type::Bool).sql;
        let sql = match op {
            LambdaOp::Any => format!("EXISTS (SELECT 1 {} AND {cond})", c.from),
            LambdaOp::All => format!("(NOT EXISTS (SELECT 1 {} AND ({cond}) IS NOT TRUE))", c.from),
        };
        Ok(Typed { sql, ty: Type::Bool })
    }

    pub(crate) fn in_list(&mut self, value: &Expr, list: &[Expr]) -> Result<Typed> {
        let v = self.expr(value)?;
        let items = list.iter().map(|a| self.expr(a)).collect::<Result<Vec<_>>>()?;
        let types: Vec<Type> = items.iter().map(|t| t.ty).collect();
        typeck::in_type(v.ty, &types).map_err(|(k, m)| type_error(self.option, list[k].span.start, m))?;
        // One type for the list: the value's, or (for a JSON value) the
        // items'; two JSON sides compare as jsonb.
        let item_ty = types.iter().copied().find(|t| !matches!(t, Type::Null | Type::Json | Type::Any));
        let target = match (v.ty, item_ty) {
            (Type::Json, Some(t)) => t,
            (t, _) => t,
        };
        let has_null = types.contains(&Type::Null);
        let v = self.coerce(v, target);
        let values: Vec<String> =
            items.into_iter().filter(|t| t.ty != Type::Null).map(|t| self.coerce(t, target).sql).collect();
        let sql = match (values.is_empty(), has_null) {
            (true, _) => format!("({} IS NULL)", v.sql),
            (false, false) => format!("({} IN ({}))", v.sql, values.join(", ")),
            (false, true) => format!("({} IN ({}) OR {} IS NULL)", v.sql, values.join(", "), v.sql),
        };
        Ok(Typed { sql, ty: Type::Bool })
    }
}

/// The type of `p` in `schema`, looking through to-many navigation
/// properties (`Datastreams/name` is a string, with "any" semantics).
fn element_type(schema: &dyn Schema, p: &Path) -> std::result::Result<Type, String> {
    match schema.resolve(p) {
        Ok(Resolved::Column { ty, .. }) => Ok(ty),
        Ok(Resolved::Json { .. }) => Ok(Type::Json),
        Err(message) => match (p.segments.first(), p.segments.len() > 1) {
            (Some(Segment::Name(nav)), true) => match schema.collection(nav, "c0") {
                Some(Ok(c)) => element_type(&*c.schema, &Path { segments: p.segments[1..].to_vec() }),
                Some(Err(m)) => Err(m),
                None => Err(message),
            },
            _ => Err(message),
        },
    }
}

/// `e` with every path `[var/]nav/rest` (outside lambda bodies) made `fresh/rest`.
fn rewrite_paths(e: &Expr, var: Option<&str>, nav: &str, fresh: &str) -> Expr {
    let kind = match &e.kind {
        ExprKind::Path(p) => {
            let skip = usize::from(var.is_some());
            let head_ok = var.is_none_or(|v| p.segments.first() == Some(&Segment::Name(v.to_string())));
            if head_ok && p.segments.get(skip) == Some(&Segment::Name(nav.to_string())) {
                let segments =
                    std::iter::once(Segment::Name(fresh.to_string())).chain(p.segments[skip + 1..].iter().cloned());
                ExprKind::Path(Path { segments: segments.collect() })
            } else {
                ExprKind::Path(p.clone())
            }
        }
        ExprKind::Literal(_) | ExprKind::Lambda { .. } => e.kind.clone(),
        ExprKind::Unary { op, operand } => {
            ExprKind::Unary { op: *op, operand: Box::new(rewrite_paths(operand, var, nav, fresh)) }
        }
        ExprKind::Binary { op, left, right } => ExprKind::Binary {
            op: *op,
            left: Box::new(rewrite_paths(left, var, nav, fresh)),
            right: Box::new(rewrite_paths(right, var, nav, fresh)),
        },
        ExprKind::Call { func, args } => {
            ExprKind::Call { func: *func, args: args.iter().map(|a| rewrite_paths(a, var, nav, fresh)).collect() }
        }
        ExprKind::In { value, list } => ExprKind::In {
            value: Box::new(rewrite_paths(value, var, nav, fresh)),
            list: list.iter().map(|a| rewrite_paths(a, var, nav, fresh)).collect(),
        },
    };
    Expr { kind, span: e.span }
}

/// Whether a path goes through a to-many navigation property, possibly
/// after to-one hops (`Thing/Locations/name` from a Datastream).
fn crosses(schema: &dyn Schema, segments: &[Segment]) -> bool {
    let (Some(Segment::Name(nav)), true) = (segments.first(), segments.len() > 1) else { return false };
    match schema.collection(nav, "c0") {
        Some(Ok(c)) if c.single => crosses(&*c.schema, &segments[1..]),
        Some(_) => true,
        None => false,
    }
}
