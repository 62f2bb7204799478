// Every string the widget shows, in English and Simplified Chinese. Texts the site configures
// (welcome, offline message, form labels) come from the server in the same two languages.
import type { Locale, Texts } from '../types';

const en = {
  chat: 'Chat',
  title: 'Chat with us',
  online: 'Online · we reply in a few minutes',
  away: 'Away · leave us a message',
  welcome: 'Hi! How can we help you today?',
  placeholder: 'Write a message…',
  send: 'Send',
  emoji: 'Insert emoji',
  emojiPicker: 'Emoji',
  minimize: 'Minimize chat',
  soundOn: 'Turn on notification sound',
  soundOff: 'Turn off notification sound',
  messages: 'Messages',
  sending: 'Sending…',
  queued: 'Waiting for connection',
  sent: 'Sent',
  read: 'Read',
  failed: 'Not sent',
  you: 'You',
  support: 'Support',
  offlineBanner: "You're offline. Messages will be sent when the connection is back.",
  reconnecting: 'Reconnecting…',
  typing: '{name} is typing…',
  joined: '{name} joined the chat',
  closed: 'This conversation was closed. Write again any time.',
  today: 'Today',
  yesterday: 'Yesterday',
  earlier: 'Show earlier messages',
  newFrom: 'New message from {name}',
  titleFlash: '({n}) New message',
  charsLeft: '{n} characters left',
  prechatIntro: 'Before we start, please tell us a little about yourself.',
  startChat: 'Start chat',
  required: 'required',
  leaveMessage: 'Leave a message',
  awayDefault: "We're away right now. Leave a message and we'll get back to you.",
  name: 'Name',
  email: 'Email',
  message: 'Message',
  sendMessage: 'Send message',
  thanks: "Thanks! We've got your message and will get back to you soon.",
  invalid: 'Please check this field.',
  powered: 'Powered by Parley',
  announce: '{name}: {text}',
};

export type Key = keyof typeof en;

const zh: Record<Key, string> = {
  chat: '在线客服',
  title: '在线咨询',
  online: '在线 · 通常几分钟内回复',
  away: '暂时离开 · 请给我们留言',
  welcome: '您好！请问有什么可以帮您？',
  placeholder: '输入消息…',
  send: '发送',
  emoji: '插入表情',
  emojiPicker: '表情',
  minimize: '最小化聊天窗口',
  soundOn: '开启提示音',
  soundOff: '关闭提示音',
  messages: '消息记录',
  sending: '发送中…',
  queued: '等待网络连接',
  sent: '已发送',
  read: '已读',
  failed: '发送失败',
  you: '我',
  support: '客服',
  offlineBanner: '网络已断开，恢复连接后消息将自动发送。',
  reconnecting: '正在重新连接…',
  typing: '{name} 正在输入…',
  joined: '{name} 已加入对话',
  closed: '本次对话已结束，您可以随时再次留言。',
  today: '今天',
  yesterday: '昨天',
  earlier: '查看更早的消息',
  newFrom: '{name} 发来新消息',
  titleFlash: '（{n}）条新消息',
  charsLeft: '还可输入 {n} 个字',
  prechatIntro: '开始对话前，请留下您的信息。',
  startChat: '开始对话',
  required: '必填',
  leaveMessage: '给我们留言',
  awayDefault: '我们暂时不在线，请留言，我们会尽快回复您。',
  name: '姓名',
  email: '邮箱',
  message: '留言内容',
  sendMessage: '提交留言',
  thanks: '感谢留言！我们已收到，会尽快回复您。',
  invalid: '请检查此项。',
  powered: '由 Parley 提供支持',
  announce: '{name}：{text}',
};

const TABLE: Record<Locale, Record<Key, string>> = { en, 'zh-CN': zh };

export function t(lang: Locale, key: Key, vars?: Record<string, string | number>): string {
  let s = TABLE[lang][key] ?? en[key];
  if (vars) for (const k in vars) s = s.split(`{${k}}`).join(String(vars[k]));
  return s;
}

/** A configured text in the visitor's language, else English, else any, else the fallback. */
export function pick(texts: Texts | undefined, lang: Locale, fallback: string): string {
  if (!texts) return fallback;
  return texts[lang] || texts.en || Object.values(texts).find(Boolean) || fallback;
}
