//! One row of the rules editor as the admin types it, and the `Rule` it
//! stands for. Sources are typed as one line (commas or spaces between
//! them); empty name and rate limit mean none.

use crate::api::firewall::{Action, Protocol, Rule};

#[derive(Debug, Clone, PartialEq)]
pub struct RuleForm {
    pub action: Action,
    pub protocol: Protocol,
    pub ports: String,
    pub sources: String,
    pub rate_limit: String,
    pub comment: String,
    pub name: String,
}

impl Default for RuleForm {
    /// A new row: allow TCP from anywhere, ports still to be typed.
    fn default() -> Self {
        RuleForm {
            action: Action::Allow,
            protocol: Protocol::Tcp,
            ports: String::new(),
            sources: String::new(),
            rate_limit: String::new(),
            comment: String::new(),
            name: String::new(),
        }
    }
}

/// Which field of a row an input edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleField {
    Action,
    Protocol,
    Ports,
    Sources,
    RateLimit,
    Comment,
    Name,
}

impl RuleField {
    /// The name the API uses in `rules[N].<field>`; also the end of the
    /// input's id (`rule-3-ports`).
    pub fn api_name(self) -> &'static str {
        match self {
            RuleField::Action => "action",
            RuleField::Protocol => "protocol",
            RuleField::Ports => "ports",
            RuleField::Sources => "sources",
            RuleField::RateLimit => "rate_limit",
            RuleField::Comment => "comment",
            RuleField::Name => "name",
        }
    }
}

impl RuleForm {
    /// Stores what an input now holds (selects send their option value).
    pub fn set(&mut self, field: RuleField, value: String) {
        match field {
            RuleField::Action => self.action = parse_action(&value),
            RuleField::Protocol => self.protocol = parse_protocol(&value),
            RuleField::Ports => self.ports = value,
            RuleField::Sources => self.sources = value,
            RuleField::RateLimit => self.rate_limit = value,
            RuleField::Comment => self.comment = value,
            RuleField::Name => self.name = value,
        }
    }
}

pub const ACTIONS: [Action; 3] = [Action::Allow, Action::Deny, Action::Reject];
pub const PROTOCOLS: [Protocol; 4] = [Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::Any];

/// A select's value; only the options above are offered.
pub fn parse_action(s: &str) -> Action {
    ACTIONS
        .into_iter()
        .find(|a| a.as_str() == s)
        .unwrap_or(Action::Allow)
}

pub fn parse_protocol(s: &str) -> Protocol {
    PROTOCOLS
        .into_iter()
        .find(|p| p.as_str() == s)
        .unwrap_or(Protocol::Tcp)
}

pub fn to_form(rule: &Rule) -> RuleForm {
    RuleForm {
        action: rule.action,
        protocol: rule.protocol,
        ports: rule.ports.clone(),
        sources: rule.sources.join(", "),
        rate_limit: rule.rate_limit.clone().unwrap_or_default(),
        comment: rule.comment.clone(),
        name: rule.name.clone().unwrap_or_default(),
    }
}

/// Nothing here refuses input: what is wrong with it is for `check_rule`
/// (and the server) to say, naming the field.
pub fn to_rule(form: &RuleForm) -> Rule {
    let optional = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    Rule {
        name: optional(&form.name),
        action: form.action,
        protocol: form.protocol,
        ports: form.ports.trim().to_string(),
        sources: form
            .sources
            .split([',', ' ', '\t', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        rate_limit: optional(&form.rate_limit),
        comment: form.comment.trim().to_string(),
    }
}

/// The row and the field of it that an API error names:
/// `rules[3].sources[0]` → `(3, "sources")`, `rules[3]` → `(3, "")`.
pub fn rule_field(field: &str) -> Option<(usize, &str)> {
    let rest = field.strip_prefix("rules[")?;
    let (index, rest) = rest.split_once(']')?;
    let index = index.parse().ok()?;
    let inner = match rest.strip_prefix('.') {
        Some(inner) => inner.split(['.', '[']).next().unwrap_or_default(),
        None if rest.is_empty() => "",
        None => return None,
    };
    Some((index, inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_round_trips_through_the_form() {
        let rule = Rule {
            name: Some("ssh".into()),
            action: Action::Allow,
            protocol: Protocol::Tcp,
            ports: "22".into(),
            sources: vec!["203.0.113.7/32".into(), "2001:db8::/32".into()],
            rate_limit: Some("6/minute".into()),
            comment: "admins".into(),
        };
        let form = to_form(&rule);
        assert_eq!(form.sources, "203.0.113.7/32, 2001:db8::/32");
        assert_eq!(to_rule(&form), rule);
    }

    #[test]
    fn sources_split_on_commas_and_spaces_and_blanks_mean_none() {
        let form = RuleForm {
            sources: " 10.0.0.0/8,192.0.2.1  2001:db8::1 ,".into(),
            name: "  ".into(),
            rate_limit: " ".into(),
            ..RuleForm::default()
        };
        let rule = to_rule(&form);
        assert_eq!(rule.sources, ["10.0.0.0/8", "192.0.2.1", "2001:db8::1"]);
        assert_eq!(rule.name, None);
        assert_eq!(rule.rate_limit, None);
    }

    #[test]
    fn selects_keep_their_values() {
        let mut form = RuleForm::default();
        form.set(RuleField::Action, "reject".into());
        form.set(RuleField::Protocol, "icmp".into());
        assert_eq!(
            (form.action, form.protocol),
            (Action::Reject, Protocol::Icmp)
        );
    }

    #[test]
    fn api_fields_name_a_row_and_its_input() {
        assert_eq!(rule_field("rules[3].ports"), Some((3, "ports")));
        assert_eq!(rule_field("rules[1].sources[0]"), Some((1, "sources")));
        assert_eq!(rule_field("rules[12].rate_limit"), Some((12, "rate_limit")));
        assert_eq!(rule_field("rules[2]"), Some((2, "")));
        assert_eq!(rule_field("rules"), None);
        assert_eq!(rule_field("enabled"), None);
        assert_eq!(rule_field("rules[x].ports"), None);
    }
}
