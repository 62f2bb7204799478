//! User-facing text. Every message a person may read comes from here, in English and
//! Simplified Chinese; the language is picked from the client's `lang` or Accept-Language.

use crate::error::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    En,
    ZhHans,
}

impl Lang {
    /// Picks the first supported language from a BCP 47 tag or an Accept-Language list.
    pub fn negotiate(header: &str) -> Lang {
        for part in header.split(',') {
            let tag = part
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if tag.starts_with("zh")
                && !tag.contains("hant")
                && !tag.ends_with("-tw")
                && !tag.ends_with("-hk")
            {
                return Lang::ZhHans;
            }
            if tag.starts_with("en") {
                return Lang::En;
            }
        }
        Lang::En
    }

    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhHans => "zh-CN",
        }
    }
}

/// The human-readable explanation of an error code.
pub fn error_message(code: ErrorCode, lang: Lang) -> &'static str {
    use ErrorCode::*;
    match lang {
        Lang::En => match code {
            BadFrame => "The request could not be read. Please update the page and try again.",
            UnknownFrameType => "This request type is not supported.",
            UnsupportedVersion => "This protocol version is not supported. Please reload the page.",
            FrameTooLarge => "The request is too large.",
            MessageTooLong => "The message is too long. Please shorten it.",
            EmptyMessage => "The message is empty.",
            InvalidClientMsgId => "The message id is invalid.",
            InvalidSeq => "The position in the conversation is invalid.",
            InvalidRequest => "The request is invalid.",
            HelloRequired => "The connection is not signed in yet.",
            HelloRepeated => "The connection is already signed in.",
            TokenMissing => "Sign-in is required.",
            TokenInvalid => "The sign-in is not valid. Please sign in again.",
            TokenExpired => "The sign-in has expired. Please sign in again.",
            SessionEnded => "You were signed out. Please sign in again.",
            InvalidCredentials => "The e-mail or password is incorrect.",
            Forbidden => "You are not allowed to do this.",
            NotFound => "Not found.",
            UnknownSite => "This chat is not configured. Please check the site key.",
            OriginNotAllowed => "Chat is not enabled for this website.",
            RateLimited => "Too many requests. Please wait a moment and try again.",
            TooManyConnections => "Too many open windows for this chat. Close one and try again.",
            AlreadyAssigned => "Another agent already has this conversation.",
            AgentUnavailable => "That agent cannot take conversations right now.",
            EmailTaken => "Another account already uses this e-mail address.",
            TooManyAttributes => "The visitor has as many attributes as can be kept. Remove some (set them to null) before adding others.",
            ConversationOpen => "This conversation is still open. It can be rated once it has ended.",
            EmptyFile => "The file is empty.",
            FileTooLarge => "The file is too large.",
            UnsupportedFileType => "This kind of file can't be sent. Images, PDF, text, office documents and zip files can.",
            FileTypeMismatch => "The file's content doesn't match its type.",
            FileNotFound => "The file is no longer available. Please attach it again.",
            MethodNotAllowed => "This method is not allowed here.",
            StorageUnavailable => "The service is busy. Please try again in a moment.",
            UploadsBusy => "Many files are arriving right now. Please try again in a moment.",
            Internal => "Something went wrong on our side. Please try again.",
        },
        Lang::ZhHans => match code {
            BadFrame => "无法读取请求，请刷新页面后重试。",
            UnknownFrameType => "不支持此请求类型。",
            UnsupportedVersion => "不支持此协议版本，请重新加载页面。",
            FrameTooLarge => "请求过大。",
            MessageTooLong => "消息过长，请缩短后再发送。",
            EmptyMessage => "消息内容为空。",
            InvalidClientMsgId => "消息编号无效。",
            InvalidSeq => "会话位置无效。",
            InvalidRequest => "请求无效。",
            HelloRequired => "连接尚未登录。",
            HelloRepeated => "连接已登录。",
            TokenMissing => "需要登录。",
            TokenInvalid => "登录信息无效，请重新登录。",
            TokenExpired => "登录已过期，请重新登录。",
            SessionEnded => "您已退出登录，请重新登录。",
            InvalidCredentials => "邮箱或密码不正确。",
            Forbidden => "您无权执行此操作。",
            NotFound => "未找到。",
            UnknownSite => "此聊天尚未配置，请检查站点密钥。",
            OriginNotAllowed => "此网站未启用聊天。",
            RateLimited => "请求过于频繁，请稍后再试。",
            TooManyConnections => "此会话打开的窗口过多，请关闭一个后重试。",
            AlreadyAssigned => "该会话已由其他客服接待。",
            AgentUnavailable => "该客服暂时无法接待会话。",
            EmailTaken => "该电子邮箱已被其他账号使用。",
            TooManyAttributes => "访客属性已达上限。请先删除一些（设为 null）再添加新的。",
            ConversationOpen => "此会话仍在进行中，结束后才能评价。",
            EmptyFile => "文件为空。",
            FileTooLarge => "文件过大。",
            UnsupportedFileType => "不支持发送此类文件。可以发送图片、PDF、文本、Office 文档和 zip 文件。",
            FileTypeMismatch => "文件内容与其类型不符。",
            FileNotFound => "该文件已不可用，请重新添加。",
            MethodNotAllowed => "此处不允许该方法。",
            StorageUnavailable => "服务繁忙，请稍后再试。",
            UploadsBusy => "当前正在接收的文件较多，请稍后再试。",
            Internal => "服务器出错，请重试。",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_languages() {
        assert_eq!(Lang::negotiate("zh-CN,zh;q=0.9,en;q=0.8"), Lang::ZhHans);
        assert_eq!(Lang::negotiate("en-US,en;q=0.9"), Lang::En);
        assert_eq!(Lang::negotiate("fr-FR, zh;q=0.5"), Lang::ZhHans);
        assert_eq!(Lang::negotiate(""), Lang::En);
        assert_eq!(Lang::negotiate("zh-TW"), Lang::En);
    }

    #[test]
    fn every_code_has_text_in_every_language() {
        for code in ErrorCode::ALL {
            for lang in [Lang::En, Lang::ZhHans] {
                assert!(!error_message(code, lang).is_empty());
            }
            assert_ne!(
                error_message(code, Lang::En),
                error_message(code, Lang::ZhHans)
            );
        }
    }
}
