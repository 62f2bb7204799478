//! Who may reach a conversation. One rule, used by every entrance (socket, HTTP, poll).

use crate::conversation::Meta;
use crate::token::Principal;

/// A visitor reaches only their own conversations; an agent reaches those of their team.
pub fn can_access(principal: &Principal, meta: &Meta) -> bool {
    match principal {
        Principal::Visitor { id, site } => *id == meta.visitor && *site == meta.site,
        Principal::Agent { team, .. } => *team == meta.team,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;
    use crate::token::AgentRole;

    fn meta() -> Meta {
        Meta {
            id: "c_1".into(),
            site: "s_1".into(),
            team: "t_1".into(),
            visitor: "v_1".into(),
            epoch: "e_1".into(),
            created_at: 0,
            status: Status::Open,
            assignee: None,
            head: 0,
            assigned_since: None,
        }
    }

    #[test]
    fn visitors_reach_only_their_own() {
        let own = Principal::Visitor {
            id: "v_1".into(),
            site: "s_1".into(),
        };
        let other = Principal::Visitor {
            id: "v_2".into(),
            site: "s_1".into(),
        };
        let same_id_other_site = Principal::Visitor {
            id: "v_1".into(),
            site: "s_2".into(),
        };
        assert!(can_access(&own, &meta()));
        assert!(!can_access(&other, &meta()));
        assert!(!can_access(&same_id_other_site, &meta()));
    }

    #[test]
    fn agents_reach_their_team() {
        let agent = |team: &str| Principal::Agent {
            id: "a_1".into(),
            team: team.into(),
            name: "A".into(),
            role: AgentRole::Agent,
            view_pii: false,
            export: false,
            sid: None,
        };
        assert!(can_access(&agent("t_1"), &meta()));
        assert!(!can_access(&agent("t_2"), &meta()));
    }
}
