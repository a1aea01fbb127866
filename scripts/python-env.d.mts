export declare const requirements: string
export declare function pythonWithSlim(): string
