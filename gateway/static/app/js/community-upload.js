// Images for the community (issue 23): the server's limits checked here, uploads with progress.
import { auth, ApiError } from "./api.js";
import { API } from "./community-common.js";

export const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
export const ACCEPT_IMAGES = "image/png,image/jpeg,image/webp,image/gif";

/** null when the server will take `file` (PNG, JPEG, WebP or GIF by its bytes, ≤ 5 MiB), else an error code. */
export async function imageProblem(file) {
  if (file.size > MAX_IMAGE_BYTES) return "IMAGE_TOO_LARGE";
  const b = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  const at = (text, from = 0) => [...text].every((c, i) => b[from + i] === c.charCodeAt(0));
  const ok = at("\x89PNG") || at("\xff\xd8\xff") || at("GIF8") || (at("RIFF") && at("WEBP", 8));
  return ok ? null : "IMAGE_TYPE";
}

/** Send multipart `form` (`method` POST or PUT) with the bearer token; `onProgress(0..1)`. */
export function upload(method, path, form, onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, API + path);
    xhr.setRequestHeader("Accept", "application/json");
    const { token } = auth.get();
    if (token) xhr.setRequestHeader("Authorization", "Bearer " + token);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let data = {};
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        /* a proxy's page: the status says enough */
      }
      if (xhr.status < 300) return resolve(data);
      const error = data.error || {};
      const retry = xhr.getResponseHeader("Retry-After");
      reject(new ApiError(xhr.status, error.code || (xhr.status === 413 ? "PAYLOAD_TOO_LARGE" : ""), error.message, retry ? { retry_after_s: Number(retry) } : {}));
    };
    xhr.onerror = () => reject(new ApiError(0, "NETWORK", "network"));
    xhr.send(form);
  });
}

