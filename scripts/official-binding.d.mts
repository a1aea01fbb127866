export declare const OFFICIAL_BINDING: string
export declare const OFFICIAL_BINDING_VERSION: string
export declare function officialBindingDir(): string
export declare function officialBindingModule(): string
