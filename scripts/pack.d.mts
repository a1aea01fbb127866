export interface Tarball {
  path: string
  size: number
  unpackedSize: number
}

export declare function hostPlatform(): string
export declare function pack(out: string): { main: Tarball; platform: Tarball }
