// Files in conversations: downloads go through the Worker with the agent's session cookie (never a
// token in a URL) and are shown from blob: URLs; uploads post the bytes (reporting how far they
// have gone), then the message names the file.
import { ApiError, SIGNED_OUT_CODES, confirmSignedOut } from './api';
import { lang, t } from './i18n';

export interface FileInfo {
  id: string;
  name: string;
  type: string;
  size: number;
  image?: boolean;
}

const blobs = new Map<string, Promise<string>>();

/** A blob: URL for a posted file of a conversation (cached for the page's lifetime). */
export function fileUrl(conversation: string, id: string): Promise<string> {
  let p = blobs.get(id);
  if (!p) {
    p = fetch(`/api/v1/conversations/${encodeURIComponent(conversation)}/files/${encodeURIComponent(id)}`, {
      headers: { 'accept-language': lang() },
      credentials: 'same-origin',
      cache: 'no-store',
    }).then(async (res) => {
      if (!res.ok) {
        const code = (await res.json().catch(() => null))?.code;
        if (res.status === 401 && SIGNED_OUT_CODES.includes(code)) void confirmSignedOut(code);
        throw new ApiError(res.status, code ?? `http_${res.status}`, t('genericError'));
      }
      return URL.createObjectURL(await res.blob());
    });
    p.catch(() => blobs.delete(id));
    blobs.set(id, p);
  }
  return p;
}

/** Saves a file to the agent's computer. */
export async function download(conversation: string, file: FileInfo): Promise<void> {
  const url = await fileUrl(conversation, file.id);
  const a = document.createElement('a');
  a.href = url;
  a.download = file.name;
  a.rel = 'noopener';
  document.body.appendChild(a);
  a.click();
  a.remove();
}

/** An upload under way: how many of its bytes have gone; or why it failed. */
export interface UploadProgress {
  readonly name: string;
  loaded: number;
  total: number;
  /** Set when the upload failed: the reason shown, and whether sending it again may work. */
  failed?: { message: string; retryable: boolean };
}

/**
 * Uploads a file; resolves to what the server stored (its real type and cleaned name). Sent with
 * XMLHttpRequest, the only way a page learns how far an upload has gone (fetch cannot tell), so
 * `onProgress` is told as the bytes leave.
 */
export async function upload(
  conversation: string,
  file: File,
  onProgress?: (loaded: number, total: number) => void,
): Promise<FileInfo> {
  const q = new URLSearchParams({ name: file.name || 'file' });
  const answer: { status: number; body: any } = await new Promise((resolve) => {
    const x = new XMLHttpRequest();
    x.open('POST', `/api/v1/conversations/${encodeURIComponent(conversation)}/files?${q}`);
    x.setRequestHeader('content-type', file.type || 'application/octet-stream');
    x.setRequestHeader('accept-language', lang());
    x.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress?.(e.loaded, e.total);
    };
    x.onload = () => {
      let body = null;
      try {
        body = JSON.parse(x.responseText);
      } catch {
        /* not JSON */
      }
      resolve({ status: x.status, body });
    };
    x.onerror = x.onabort = x.ontimeout = () => resolve({ status: 0, body: null });
    x.send(file);
  });
  const { status, body } = answer;
  if (status === 0) throw new ApiError(0, 'network', t('networkError'));
  if (status < 200 || status >= 300 || !body?.file?.id) {
    throw new ApiError(status, body?.code ?? `http_${status}`, body?.message ?? t('genericError'), Number(body?.retry_after_ms) || undefined);
  }
  return body.file as FileInfo;
}

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const [n, unit] = bytes < 1024 * 1024 ? [bytes / 1024, 'kilobyte'] : [bytes / (1024 * 1024), 'megabyte'];
  return new Intl.NumberFormat(lang(), { style: 'unit', unit, unitDisplay: 'short', maximumFractionDigits: n < 10 ? 1 : 0 }).format(n);
}
