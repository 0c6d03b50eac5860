//! Deciding a request against statements: deny wins, then allow, else denied.

use std::net::IpAddr;

use super::matching::{wildcard, Cidr};
use crate::registry::iam::{Condition, Effect, Statement};

/// What the statements say about one request on one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// An allowing statement matches and no denying one does.
    Allow,
    /// A denying statement matches.
    Deny,
    /// No statement matches.
    NoMatch,
}

/// What the request's conditions are evaluated against.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts<'a> {
    /// The client's address (`qcs:ip`).
    pub ip: Option<IpAddr>,
    /// The serving node's wall clock, in milliseconds (`qcs:current_time`).
    pub now_ms: u64,
    /// The key's tags as `key&value` (`qcs:resource_tag`); `None` when the resource is not one
    /// existing key.
    pub resource_tags: Option<&'a [String]>,
}

/// Decides `action` (`kms:Encrypt`) on `resource` (a CAM resource name) under `statements`.
pub fn evaluate<'a>(
    statements: impl IntoIterator<Item = &'a Statement>,
    action: &str,
    resource: &str,
    facts: &Facts<'_>,
) -> Decision {
    let mut decision = Decision::NoMatch;
    for s in statements {
        // Once allowed, only a deny can change the answer.
        if decision == Decision::Allow && s.effect == Effect::Allow {
            continue;
        }
        let applies = s.actions.iter().any(|a| wildcard(a, action))
            && s.resources.iter().any(|r| wildcard(r, resource))
            && s.conditions.iter().all(|c| holds(c, facts));
        if applies {
            match s.effect {
                Effect::Deny => return Decision::Deny,
                Effect::Allow => decision = Decision::Allow,
            }
        }
    }
    decision
}

/// The kind of value an operator compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
    String,
    Ip,
    Date,
    Null,
}

/// How an operator compares one request value with one policy value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compare {
    Equal,
    Like,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
}

/// A parsed condition operator: `[for_any_value:|for_all_value:]<family>_<compare>[_if_exist]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Operator {
    pub(super) family: Family,
    compare: Compare,
    negated: bool,
    if_exist: bool,
    /// `for_all_value:`: every request value must satisfy (else any one).
    all_values: bool,
}

impl Operator {
    pub(super) fn parse(s: &str) -> Option<Operator> {
        let (all_values, rest) = if let Some(r) = s.strip_prefix("for_all_value:") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("for_any_value:") {
            (false, r)
        } else {
            (false, s)
        };
        let (if_exist, base) = match rest.strip_suffix("_if_exist") {
            Some(b) => (true, b),
            None => (false, rest),
        };
        use Compare::*;
        use Family::*;
        let (family, compare, negated) = match base {
            "string_equal" => (String, Equal, false),
            "string_not_equal" => (String, Equal, true),
            "string_like" => (String, Like, false),
            "string_not_like" => (String, Like, true),
            "ip_equal" => (Ip, Equal, false),
            "ip_not_equal" => (Ip, Equal, true),
            "date_equal" => (Date, Equal, false),
            "date_not_equal" => (Date, Equal, true),
            "date_less_than" => (Date, Less, false),
            "date_less_than_equal" => (Date, LessEqual, false),
            "date_greater_than" => (Date, Greater, false),
            "date_greater_than_equal" => (Date, GreaterEqual, false),
            "null_equal" if !if_exist => (Null, Equal, false),
            _ => return None,
        };
        Some(Operator {
            family,
            compare,
            negated,
            if_exist,
            all_values,
        })
    }
}

/// The condition keys this service evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ConditionKey {
    Ip,
    CurrentTime,
    ResourceTag,
}

impl ConditionKey {
    pub(super) fn parse(s: &str) -> Option<ConditionKey> {
        Some(match s {
            "qcs:ip" => ConditionKey::Ip,
            "qcs:current_time" => ConditionKey::CurrentTime,
            "qcs:resource_tag" => ConditionKey::ResourceTag,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            ConditionKey::Ip => "qcs:ip",
            ConditionKey::CurrentTime => "qcs:current_time",
            ConditionKey::ResourceTag => "qcs:resource_tag",
        }
    }

    pub(super) fn operators(self) -> &'static str {
        match self {
            ConditionKey::Ip => "ip_equal, ip_not_equal",
            ConditionKey::CurrentTime => "date_* operators",
            ConditionKey::ResourceTag => "string_* operators",
        }
    }
}

/// Whether one condition holds for the request. A condition this build cannot read (a policy
/// stored by a newer build) does not hold: an allow does not apply, a deny does not either —
/// but `parse` refuses such conditions, so a stored policy never has one.
fn holds(c: &Condition, facts: &Facts<'_>) -> bool {
    let (Some(op), Some(key)) = (Operator::parse(&c.operator), ConditionKey::parse(&c.key)) else {
        return false;
    };
    // The request's values of the key (an address and a time are compared as such below; their
    // text only stands for "present").
    let request: Option<Vec<&str>> = match key {
        ConditionKey::Ip => facts.ip.map(|_| vec![""]),
        ConditionKey::CurrentTime => Some(vec![""]),
        ConditionKey::ResourceTag => facts
            .resource_tags
            .filter(|t| !t.is_empty())
            .map(|t| t.iter().map(String::as_str).collect()),
    };
    if op.family == Family::Null {
        let want_absent = c.values.iter().any(|v| v == "true");
        return request.is_none() == want_absent;
    }
    let Some(request) = request else {
        return op.if_exist;
    };
    let one = |r: &str| {
        let matched = c.values.iter().any(|v| compare(op, key, r, v, facts));
        matched != op.negated
    };
    if op.all_values {
        request.iter().all(|r| one(r))
    } else {
        request.iter().any(|r| one(r))
    }
}

fn compare(op: Operator, key: ConditionKey, request: &str, policy: &str, facts: &Facts) -> bool {
    match op.family {
        Family::String => match op.compare {
            Compare::Like => wildcard(policy, request),
            _ => policy == request,
        },
        Family::Ip => match (Cidr::parse(policy), facts.ip) {
            (Some(block), Some(ip)) if key == ConditionKey::Ip => block.contains(ip),
            _ => false,
        },
        Family::Date => {
            let Some(limit) = parse_time(policy) else {
                return false;
            };
            let now = facts.now_ms / 1000;
            match op.compare {
                Compare::Equal | Compare::Like => now == limit,
                Compare::Less => now < limit,
                Compare::LessEqual => now <= limit,
                Compare::Greater => now > limit,
                Compare::GreaterEqual => now >= limit,
            }
        }
        Family::Null => false,
    }
}

/// Seconds since the Unix epoch of a UTC time written `YYYY-MM-DDThh:mm:ssZ` (fractional
/// seconds allowed and ignored), as CAM's `qcs:current_time` takes it.
pub(super) fn parse_time(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, u32, u32) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if d.next().is_some()
        || !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
    {
        return None;
    }
    let time = time.split('.').next()?;
    let mut t = time.split(':');
    let (hh, mm, ss): (u64, u64, u64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if t.next().is_some() || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days.checked_mul(86_400)? + (hh * 3600 + mm * 60 + ss) as i64;
    u64::try_from(secs).ok()
}
